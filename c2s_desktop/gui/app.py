"""``c2s-desktop [DATA.h5ad]``: the desktop application's entry point.

Owns the QApplication and the command-line flags: ``--screenshot PATH`` (render after loading,
save a PNG, exit) and ``--self-test`` (exercise the main paths on the demo data offscreen).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from pathlib import Path

from .. import __version__
from ..core.resources import resource_path


def demo_data_path() -> Path:
    """The bundled demo dataset (700 real PBMCs), used by ``--self-test``."""
    return resource_path("demo", "pbmc_demo.h5ad")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="c2s-desktop", description="C2S Desktop")
    p.add_argument("data", nargs="?", type=Path, help="AnnData .h5ad file to open")
    p.add_argument("--screenshot", type=Path, help="save a PNG of the window and exit")
    p.add_argument(
        "--self-test", action="store_true", help="check the app on the demo data and exit 0/1"
    )
    p.add_argument("--version", action="version", version=f"C2S Desktop {__version__}")
    return p.parse_args(argv)


def _has_display() -> bool:
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: list[str] | None = None) -> int:
    """Start the app; returns the process exit code."""
    multiprocessing.freeze_support()  # the model process is spawned; needed in frozen bundles
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not os.environ.get("QT_QPA_PLATFORM"):
        if args.self_test or (args.screenshot is not None and not _has_display()):
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        elif not _has_display():
            print(
                "error: no display found (DISPLAY/WAYLAND_DISPLAY unset) — run C2S Desktop in "
                "a desktop session, or use the 'c2s' command line",
                file=sys.stderr,
            )
            return 2
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("C2S Desktop")
    app.setOrganizationName("C2S Desktop")
    icon = resource_path("icons", "c2s-desktop-256.png")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    app.setDesktopFileName("io.github.c2s_desktop")
    if args.self_test:
        from .selftest import self_test

        passed, line = self_test(args.data or demo_data_path())
        print(line, file=sys.stdout if passed else sys.stderr)
        return 0 if passed else 1

    from .main_window import MainWindow

    window = MainWindow()
    window.show()
    if args.data is not None:
        window.open_file(args.data)
    if args.screenshot is not None:
        return _screenshot(window, args.screenshot)
    return app.exec()


def _screenshot(window, path: Path) -> int:  # noqa: ANN001 - MainWindow (imported lazily)
    from PySide6.QtWidgets import QApplication

    window.wait_until_idle()
    QApplication.processEvents()
    window.view.render_now()
    ok = window.grab().save(str(path), "PNG")
    window.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
