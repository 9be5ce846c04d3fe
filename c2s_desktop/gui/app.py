"""``c2s-desktop [DATA.h5ad]``: the desktop application's entry point.

The full main window (embedding view, selection, model tasks) is built up in ``main_window``;
this module owns the QApplication, command-line flags and the top-level error handling.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import __version__


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="c2s-desktop", description="C2S Desktop")
    p.add_argument("data", nargs="?", type=Path, help="AnnData .h5ad file to open")
    p.add_argument("--screenshot", type=Path, help="save a PNG of the window and exit")
    p.add_argument("--version", action="version", version=f"C2S Desktop {__version__}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start the app; returns the process exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if headless and not os.environ.get("QT_QPA_PLATFORM"):
        if args.screenshot is None:
            print(
                "error: no display found (DISPLAY/WAYLAND_DISPLAY unset) — run C2S Desktop in "
                "a desktop session, or use the 'c2s' command line",
                file=sys.stderr,
            )
            return 2
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("C2S Desktop")
    app.setOrganizationName("C2S Desktop")
    window = MainWindow()
    window.show()
    if args.data is not None:
        window.open_file(args.data)
    if args.screenshot is not None:
        window.wait_until_idle()
        ok = window.grab().save(str(args.screenshot), "PNG")
        window.close()
        return 0 if ok else 1
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
