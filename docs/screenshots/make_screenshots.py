"""Render the README screenshots offscreen: model manager, annotation results, C2S embedding.

    QT_QPA_PLATFORM=offscreen python docs/screenshots/make_screenshots.py

Uses the bundled demo data and demo model, throw-away settings and models folder; writes
``models.png``, ``annotate.png`` and ``embed.png`` next to this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

from screenshot_window import open_main_window

HERE = Path(__file__).resolve().parent


def main() -> int:
    app, w, _ = open_main_window(1500, 880)
    from c2s_desktop.core.model_store import demo_model_path
    from c2s_desktop.core.tasks.annotate import MODE_REPRESENTATIVE
    from c2s_desktop.gui.app import demo_data_path
    from c2s_desktop.gui.engine_host import RunOptions
    from c2s_desktop.gui.panels.annotate import CANDIDATES_OBS

    w.open_file(demo_data_path())
    w.wait_until_idle()
    w.engine_host.set_options(RunOptions(threads=1))  # tiny model: one thread is fastest
    w.load_model(demo_model_path())
    w.wait_until_idle()

    manager = w.show_model_manager()
    w.wait_until_idle()
    manager.select_path(demo_model_path())
    app.processEvents()
    manager.grab().save(str(HERE / "models.png"), "PNG")
    manager.close()

    panel = w.annotate_panel
    w.show_annotate()
    panel.scope_all.setChecked(True)
    panel.mode_box.setCurrentText(MODE_REPRESENTATIVE)
    panel.cluster_box.setCurrentText("louvain")
    panel.k_spin.setValue(3)
    panel.candidates_box.setCurrentText(CANDIDATES_OBS)
    panel.candidates_obs.setCurrentText("cell_type")
    w.annotate.run()
    w.wait_until_idle(600_000)
    panel.threshold.setValue(0.6)
    app.processEvents()
    w.view.render_now()
    w.grab().save(str(HERE / "annotate.png"), "PNG")

    w.clear_selection()
    w.embed_cells()
    w.wait_until_idle(600_000)
    app.processEvents()
    w.view.render_now()
    w.grab().save(str(HERE / "embed.png"), "PNG")
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
