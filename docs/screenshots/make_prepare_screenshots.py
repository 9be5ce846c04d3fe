"""Render the README screenshots of preparing a dataset: QC view, prepared map, dot plot.

    QT_QPA_PLATFORM=offscreen python docs/screenshots/make_prepare_screenshots.py

Starts from the bundled demo cells without their embeddings (raw counts only), with throw-away
settings and data folder; writes ``qc.png``, ``prepared_map.png`` and ``dotplot.png`` next to
this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

from screenshot_window import open_main_window

HERE = Path(__file__).resolve().parent


def main() -> int:
    app, w, tmp = open_main_window(1500, 880)
    import anndata as ad

    from c2s_desktop.gui.app import demo_data_path

    adata = ad.read_h5ad(demo_data_path())
    adata.obsm.clear()
    raw = tmp / "pbmc_raw.h5ad"
    adata.write_h5ad(raw)

    w.open_file(raw)
    w.wait_until_idle()
    dialog = w.preparer.open_dialog()
    w.wait_until_idle()
    dialog.min_genes.setValue(200)
    dialog.max_genes.setValue(380)
    dialog.max_pct_mt.setValue(5)
    dialog.n_top_genes.setValue(500)
    app.processEvents()
    dialog.grab().save(str(HERE / "qc.png"), "PNG")
    dialog.run_button.click()
    while "prepared from" not in w.windowTitle():
        w.wait_until_idle(300_000)
        app.processEvents()
    w.wait_until_idle()
    w.clusters.rename("3", "CD14 monocytes")
    w.marker_view.show()
    app.processEvents()
    w.view.render_now()
    w.grab().save(str(HERE / "prepared_map.png"), "PNG")
    w.marker_view.dock.resize(620, 760)
    w.marker_view.panel.resize(600, 720)
    app.processEvents()
    w.marker_view.panel.grab().save(str(HERE / "dotplot.png"), "PNG")
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
