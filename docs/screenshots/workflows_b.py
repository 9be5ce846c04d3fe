"""Render the assistant, generate and export screenshots offscreen.

    QT_QPA_PLATFORM=offscreen python docs/screenshots/workflows_b.py

Uses the bundled demo data and demo model with throw-away settings, sessions and models folder;
writes ``assistant.png``, ``generate.png`` and ``export.png`` next to this script.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from screenshot_window import open_main_window

HERE = Path(__file__).resolve().parent


def main() -> int:
    app, w, tmp = open_main_window(1500, 900)
    import numpy as np
    from PySide6.QtWidgets import QDockWidget

    from c2s_desktop.core.model_store import demo_model_path
    from c2s_desktop.gui.app import demo_data_path

    # a copy in a neutral folder: the export dialog shows paths next to the input
    data = tmp / "home" / "analyst" / "projects" / "PBMC study" / "pbmc_demo.h5ad"
    data.parent.mkdir(parents=True)
    shutil.copyfile(demo_data_path(), data)
    w.open_file(data)
    w.wait_until_idle()
    w.load_model(demo_model_path())
    w.wait_until_idle()
    assert w.dataset is not None

    def settle() -> None:
        for _ in range(5):
            app.processEvents()
        w.wait_until_idle(600_000)
        app.processEvents()

    def shoot(dock: QDockWidget, width: int, height: int, name: str) -> None:
        dock.setFloating(True)  # its own size, not the share of a dock area
        dock.show()
        dock.resize(width, height)
        settle()
        dock.widget().grab().save(str(HERE / name), "PNG")
        dock.setFloating(False)

    # Assistant: summary and a question about the monocytes
    rows = np.flatnonzero(w.dataset.obs["cell_type"].astype(str).to_numpy() == "CD14+ Monocyte")
    w.set_selection(rows)
    settle()
    w.assistant.summarize()
    settle()
    w.assistant.ask("What cell type are these cells?")
    settle()
    shoot(w.assistant.dock, 760, 560, "assistant.png")

    # Generate: B cells compared with the real B cells of the dataset
    g = w.generator
    g.show()
    g.panel.type_box.setCurrentText("CD19+ B")
    g.panel.n_cells.setValue(4)
    g.panel.temperature.setValue(0.8)
    g.panel.seed.setValue(7)
    g.generate()
    settle()
    shoot(g.dock, 700, 900, "generate.png")

    # Export dialog with everything above
    dialog = w.exporter.open_dialog()
    assert dialog is not None
    settle()
    dialog.grab().save(str(HERE / "export.png"), "PNG")
    dialog.reject()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
