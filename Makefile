# C2S Desktop — developer entry points. A .venv in the repo, on the default Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# llama-cpp-python is built from source; portable (no -march=native) unless overridden.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
LLAMA_KEY := $(shell printf '%s' "$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)" | sha1sum | cut -c1-12)
WHEELS := .wheels/llama-$(LLAMA_KEY)
DEMO_DATA := resources/demo/pbmc_demo.h5ad
DEMO_MODEL := resources/demo/c2s-demo-pbmc.q8_0.gguf

export GGML_NO_BACKTRACE := 1

.PHONY: demo test lint bench fuzz clean venv dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

$(WHEELS)/.built: | $(VENV)/bin/python
	mkdir -p $(WHEELS)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --no-cache-dir --no-deps \
		-w $(WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	touch $@

$(VENV)/.app-installed: pyproject.toml quantize/pyproject.toml $(WHEELS)/.built
	$(BIN)/pip install --quiet --find-links $(WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install --quiet --find-links $(WHEELS) -e quantize -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.app-installed
	$(BIN)/pip install --quiet --find-links $(WHEELS) -e "quantize" -e ".[dev]"
	# Test oracle only (CC BY-NC-ND, never shipped); its heavy extras are not needed.
	$(BIN)/pip install --quiet --no-deps cell2sentence==1.2.0
	touch $@

venv: $(VENV)/.app-installed
dev: $(VENV)/.dev-installed

demo: $(VENV)/.app-installed
	$(BIN)/c2s info $(DEMO_DATA)
	$(BIN)/c2s annotate $(DEMO_DATA) --model $(DEMO_MODEL) --candidates-from cell_type \
		--cluster-key louvain --mode representative -o demo_annotated.h5ad --overwrite
	$(BIN)/c2s report demo_annotated.h5ad -o demo_report.html --overwrite
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then $(BIN)/c2s-desktop demo_annotated.h5ad; \
	else echo "(no display: open demo_report.html, or run c2s-desktop in a desktop session)"; fi

test: $(VENV)/.dev-installed
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q tests

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/sentences.py
	$(BIN)/python bench/quantize.py
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/annotate_representative.py
	$(BIN)/python resources/demo/evaluate_demo_model.py

clean:
	rm -rf $(VENV) build dist *.egg-info demo_annotated.h5ad demo_report.html
