"""``c2s-desktop --self-test``: drive the main paths on the demo data, report one line.

Used by installers and CI to prove a packaged app works: open, draw, colour, select, top genes,
cell sentences, gene colouring, PCA, export, a small annotation with the bundled demo model
(in its own process) and a preprocessing of the data's counts with scanpy (QC, clustering, UMAP,
markers; in a child process too). Settings, sessions and the models folder go to a temporary folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt

from ..core.embedding import PCA_KEY
from ..core.model_store import MODELS_ENV, demo_model_path
from ..core.tasks.annotate import MODE_PER_CELL
from .engine_host import RunOptions
from .main_window import MainWindow
from .panels.annotate import CANDIDATES_OBS, LABEL_COLUMN

ANNOTATE_CELLS = 20
MIN_AGREEMENT = 0.5


class SelfTestFailure(Exception):  # noqa: N818 - carries the one-line reason
    """One step of the self-test went wrong."""


def _check(ok: bool, reason: str) -> None:
    if not ok:
        raise SelfTestFailure(reason)


def _idle(window: MainWindow, step: str) -> None:
    _check(window.wait_until_idle(60_000), f"{step} did not finish within 60 s")
    if window.last_error is not None:
        text = " ".join(f"{window.last_error.text()} {window.last_error.informativeText()}".split())
        raise SelfTestFailure(f"{step}: {text}")


def run_self_test(window: MainWindow, data: Path, out_dir: Path) -> str:
    """Run every step on ``data``; returns a summary or raises :class:`SelfTestFailure`."""
    window.open_file(data)
    _idle(window, "opening the demo data")
    ds = window.dataset
    _check(ds is not None, "the demo data did not open")
    assert ds is not None
    view = window.view
    view.render_now()
    _check(view.image_pixels() > 0, "the embedding was not drawn")
    _check(view.colour_column is not None and view.legend.count() > 0, "no category legend")
    first = view.legend.item(0).data(Qt.ItemDataRole.UserRole)
    view.select_categories([first])
    _idle(window, "selecting a category")
    n = len(window.selection.current)
    _check(n > 0, f"selecting category '{first}' selected nothing")
    panel = window.selection_panel
    _check(panel.markers.rowCount() > 0, "no top genes for the selection")
    _check(bool(panel.sentences_text().strip()), "no cell sentences for the selection")
    gene = panel.markers.item(0, 0).text()
    window.colour_by_gene(gene)
    _idle(window, f"colouring by {gene}")
    _check(view.gene == gene, f"colouring by gene {gene} failed")
    view.select_polygon(np.array([[-1e9, -1e9], [1e9, -1e9], [1e9, 1e9], [-1e9, 1e9]]))
    _idle(window, "lasso selection")
    _check(len(window.selection.current) == ds.n_cells, "a lasso around everything missed cells")
    window.compute_pca()
    _idle(window, "computing PCA")
    _check(PCA_KEY in window.embeddings, "PCA was not computed")
    out = window.export_selection(out_dir / "selection.csv")
    _check(out is not None and len(out.read_text().splitlines()) == ds.n_cells + 1, "bad export")
    agreement = _annotate(window)
    prepared = _preprocess(data, out_dir / "prepared.h5ad")
    return (
        f"{ds.n_cells} cells, category '{first}' ({n} cells), top gene {gene}, "
        f"demo model labels agree on {agreement:.0%} of {ANNOTATE_CELLS} cells, {prepared}"
    )


def _preprocess(data: Path, output: Path) -> str:
    """Preprocess ``data`` with scanpy in a child process, as the Prepare dialog does (the
    command line runs it in-process); the output has clusters and a UMAP."""
    import h5py

    from ..core.preprocess import CLUSTER_KEY, run_preprocess_process

    summary = run_preprocess_process(data, output)
    with h5py.File(output, "r") as f:
        _check(f"obs/{CLUSTER_KEY}" in f, f"preprocessing wrote no obs['{CLUSTER_KEY}']")
        _check("obsm/X_umap" in f, "preprocessing wrote no obsm['X_umap']")
        shape = f["obsm/X_umap"].shape
    _check(shape == (summary.n_cells_kept, 2), f"preprocessing wrote a UMAP of shape {shape}")
    _check(summary.n_clusters > 1, f"preprocessing found {summary.n_clusters} cluster(s)")
    return f"preprocessed {summary.n_cells_kept} cells into {summary.n_clusters} clusters"


def _annotate(window: MainWindow) -> float:
    """Per-cell annotation of a few cells with the demo model; agreement with ``cell_type``."""
    ds = window.dataset
    assert ds is not None
    # The demo model is tiny: one thread is as fast as many, and a busy machine's spin-waiting
    # thread pool cannot slow it down.
    window.engine_host.set_options(RunOptions(threads=1))
    _check(window.load_model(demo_model_path()), "the demo model could not be loaded")
    _idle(window, "loading the demo model")
    _check(window.engine_host.is_loaded(), "the demo model did not load")
    rows = np.arange(min(ANNOTATE_CELLS, ds.n_cells))
    window.set_selection(rows)
    _idle(window, "selecting cells to annotate")
    panel = window.annotate_panel
    panel.scope_selection.setChecked(True)
    panel.mode_box.setCurrentText(MODE_PER_CELL)
    if "cell_type" not in ds.obs.columns:
        return 0.0  # another file: annotation is only checked on the demo data
    panel.candidates_box.setCurrentText(CANDIDATES_OBS)
    panel.candidates_obs.setCurrentText("cell_type")
    candidates = set(panel.candidates())
    window.annotate.run()
    _idle(window, "annotating with the demo model")
    _check(LABEL_COLUMN in ds.obs.columns, "annotation added no label column")
    labels = ds.obs[LABEL_COLUMN].astype(object).to_numpy()[rows].astype(str)
    _check(set(labels) <= candidates, f"labels outside the candidates: {set(labels) - candidates}")
    agreement = float(np.mean(labels == ds.obs["cell_type"].astype(str).to_numpy()[rows]))
    _check(agreement >= MIN_AGREEMENT, f"demo model labels agree on only {agreement:.0%}")
    _check(view_has(window, LABEL_COLUMN), "the label column is not offered in the view")
    return agreement


def view_has(window: MainWindow, column: str) -> bool:
    return window.view.colour_box.findText(column) >= 0


def self_test(data: Path) -> tuple[bool, str]:
    """Run the self-test in a fresh window with throw-away settings; ``(passed, line)``."""
    saved_env = {k: os.environ.get(k) for k in ("C2S_SESSION_DIR", MODELS_ENV)}
    with tempfile.TemporaryDirectory(prefix="c2s-self-test-") as tmp:
        os.environ["C2S_SESSION_DIR"] = tmp
        os.environ[MODELS_ENV] = str(Path(tmp) / "models")
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, tmp)
        window = MainWindow()
        window.show()
        try:
            summary = run_self_test(window, data, Path(tmp))
        except SelfTestFailure as exc:
            return False, f"self-test failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - any crash is a failed self-test
            return False, f"self-test failed: {exc.__class__.__name__}: {exc}"
        finally:
            window.close()
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return True, f"self-test passed: {summary}"
