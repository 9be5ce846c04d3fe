"""Fast checks of the packaging files (`make package-test` builds and runs the bundle)."""

from __future__ import annotations

import ast
import configparser
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
ICONS = ROOT / "resources" / "icons"
APP_ID = "io.github.c2s_desktop"
EXECUTABLES = ("c2s-desktop", "c2s", "c2s-quantize")
ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)


def _spec_tree() -> ast.Module:
    return ast.parse((PACKAGING / "c2s_desktop.spec").read_text(encoding="utf-8"))


def _string_list(tree: ast.Module, name: str) -> list[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    raise AssertionError(f"{name} not found in the spec")


def test_spec_builds_three_executables_into_one_folder():
    tree = _spec_tree()
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    count = {name: sum(c.func.id == name for c in calls) for name in ("Analysis", "COLLECT")}  # type: ignore[attr-defined]
    assert count == {"Analysis": 1, "COLLECT": 1}  # one set of modules and libraries
    exes = {
        tuple(ast.literal_eval(arg) for arg in c.args[:2] if isinstance(arg, ast.Constant))
        for c in calls
        if c.func.id == "exe"  # type: ignore[attr-defined]
    }
    assert exes == {
        ("c2s_desktop_gui.py",),  # named NAME = "c2s-desktop"
        ("c2s_cli.py", "c2s"),
        ("c2s_quantize_cli.py", "c2s-quantize"),
    }
    for script, *_ in exes:
        assert (PACKAGING / "entry" / script).is_file()
    analysis = next(c for c in calls if c.func.id == "Analysis")  # type: ignore[attr-defined]
    keywords = {k.arg: k.value for k in analysis.keywords}
    assert ast.literal_eval(keywords["noarchive"]) is True  # modules shared, not embedded 3x
    hidden = set(ast.literal_eval(keywords["hiddenimports"]))
    assert {"c2s_desktop.cli", "c2s_quantize.cli", "c2s_quantize._worker"} <= hidden


def test_spec_keeps_dev_only_and_unused_packages_out():
    excludes = set(_string_list(_spec_tree(), "EXCLUDES"))
    for name in ("tkinter", "torch", "transformers", "pytest", "llama_cpp.server"):
        assert name in excludes
    assert not any(e in excludes for e in ("PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets"))
    # scanpy's preprocessing imports these at run time (matplotlib: scanpy imports its plotting).
    needed = ("scanpy", "numba", "llvmlite", "sklearn", "umap", "pynndescent", "igraph")
    needed += ("statsmodels", "matplotlib", "PIL")
    assert not [e for e in excludes if e.split(".")[0] in needed and "." not in e]


HOOK = PACKAGING / "hooks" / "rthooks" / "pyi_rth_c2s_numba_cache.py"
NUMBA_SCRIPT = """
import os, runpy, sys, types
sys._MEIPASS = sys.argv[1]
runpy.run_path(sys.argv[2])
import numba
src = "def twice_plus_one(x):\\n    return 2 * x + 1\\n"
mod = sys.modules["fakepkg_mod"] = types.ModuleType("fakepkg_mod")
exec(compile(src, os.path.join("fakepkg", "mod.py"), "exec"), mod.__dict__)  # as bundled code
f = numba.njit(cache=True)(mod.twice_plus_one)
print(f(20), sum(f.stats.cache_hits.values()), os.environ["NUMBA_CACHE_DIR"])
"""


@pytest.mark.timeout(240)
def test_numba_cache_hook_caches_bundled_code_per_user_not_in_the_bundle(tmp_path):
    """Bundled modules' code names a relative path: the runtime hook caches their numba
    functions under the user's cache folder (whatever the current folder), a second start
    loads them from there, and nothing is written into the bundle."""
    bundle = tmp_path / "bundle"
    (bundle / "fakepkg").mkdir(parents=True)
    (bundle / "fakepkg" / "mod.pyc").write_bytes(b"stamp")
    before = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")}
    runs = []
    for cwd in (tmp_path, bundle / "fakepkg"):
        proc = subprocess.run(
            [sys.executable, "-c", NUMBA_SCRIPT, str(bundle), str(HOOK)],
            capture_output=True,
            text=True,
            timeout=200,
            env=env,
            cwd=cwd,
        )
        assert proc.returncode == 0, proc.stderr
        runs.append(proc.stdout.split())
    cache = tmp_path / "home" / ".cache" / "c2s-desktop" / "numba"
    assert [r[0] for r in runs] == ["41", "41"]
    assert runs[0][1] == "0" and int(runs[1][1]) > 0  # compiled once, then loaded
    assert runs[0][2] == runs[1][2] == str(cache)
    assert {p.suffix for p in (cache / "fakepkg").iterdir()} == {".nbi", ".nbc"}
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == before


def test_package_venv_never_installs_the_dev_extras():
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = text.split("$(PKG_VENV)/.installed-$(LLAMA_KEY):", 1)[1].split("\n\n", 1)[0]
    assert '".[package]"' in recipe and "[dev" not in recipe
    assert "--find-links $(WHEELS) llama-cpp-python==$(LLAMA_VERSION)" in recipe


@pytest.mark.timeout(120)
def test_entry_dispatches_the_quantize_child_before_starting_the_app(tmp_path):
    """``<exe> -m c2s_quantize._worker ...`` (how c2s-quantize starts its child) reaches the
    worker: a missing source model gives the worker's own error and exit code 2."""
    missing = tmp_path / "missing.gguf"
    proc = subprocess.run(
        [
            sys.executable,
            str(PACKAGING / "entry" / "c2s_desktop_gui.py"),
            "-m",
            "c2s_quantize._worker",
            "quantize",
            str(missing),
            str(tmp_path / "out.gguf"),
            "7",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=110,
        env={"GGML_NO_BACKTRACE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2, proc.stderr
    assert "llama_model_quantize returned" in proc.stderr
    assert not (tmp_path / "out.gguf").exists()


def test_desktop_entry_points_at_the_installed_binary_and_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(PACKAGING / "linux" / f"{APP_ID}.desktop", encoding="utf-8")
    de = entry["Desktop Entry"]
    assert de["Type"] == "Application" and de["Terminal"] == "false"
    assert de["Exec"].split()[0] == "c2s-desktop"
    assert de["Icon"] == "c2s-desktop"
    assert de["Categories"].endswith(";") and "Science" in de["Categories"]
    meta = ET.parse(PACKAGING / "linux" / f"{APP_ID}.metainfo.xml").getroot()
    assert meta.findtext("id") == APP_ID
    assert meta.find("launchable").text == f"{APP_ID}.desktop"  # type: ignore[union-attr]
    assert {b.text for b in meta.iter("binary")} == set(EXECUTABLES)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_icons_exist_in_every_size_the_installers_use():
    assert ET.parse(ICONS / "c2s-desktop.svg").getroot().tag.endswith("svg")
    for size in ICON_SIZES:
        path = ICONS / f"c2s-desktop-{size}.png"
        assert _png_size(path) == (size, size)
        assert path.stat().st_size < 64_000
    ico = (ICONS / "c2s-desktop.ico").read_bytes()
    assert ico[:4] == b"\x00\x00\x01\x00" and struct.unpack("<H", ico[4:6])[0] >= 3
    deb = (PACKAGING / "linux" / "build_deb.sh").read_text(encoding="utf-8")
    sizes = re.search(r"for size in ([\d ]+); do", deb)
    assert sizes is not None and tuple(map(int, sizes.group(1).split())) == ICON_SIZES


def test_installer_scripts_reference_files_that_exist():
    iss = (PACKAGING / "windows" / "c2s-desktop.iss").read_text(encoding="utf-8")
    assert re.search(r"AppId=\{\{[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}\}", iss)
    icon = re.search(r"SetupIconFile=(.+)", iss)
    assert icon is not None
    assert (PACKAGING / "windows" / icon.group(1).strip().replace("\\", "/")).resolve().is_file()
    assert "{app}\\c2s-desktop.exe" in iss
    # Uninstall never deletes user data (AppData folders of models, settings, logs).
    assert "userappdata" not in iss.lower() and "localappdata" not in iss.lower()
    assert (PACKAGING / "macos" / "entitlements.plist").is_file()
    ET.parse(PACKAGING / "macos" / "entitlements.plist")
    for script in ("linux/build_deb.sh", "linux/package_test.sh", "macos/make_dmg.sh"):
        path = PACKAGING / script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
        subprocess.run(["bash", "-n", str(path)], check=True)


def test_size_budget_is_checked_and_documented_once():
    deb = (PACKAGING / "linux" / "build_deb.sh").read_text(encoding="utf-8")
    budget = re.search(r"^BUDGET_MB=(\d+)$", deb, re.MULTILINE)
    assert budget is not None and '-le "$BUDGET_MB"' in deb
    docs = (ROOT / "docs" / "BUILD.md").read_text(encoding="utf-8")
    assert f"Budget: {budget.group(1)} MiB unpacked" in docs
    total = re.search(r"\| \*\*Total\*\* \| \*\*(\d+)\*\* \|", docs)
    assert total is not None and int(total.group(1)) <= int(budget.group(1))
