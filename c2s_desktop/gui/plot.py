"""Embedding view: the full cloud rasterised with numpy into an ImageItem, selection on top.

pyqtgraph's ScatterPlotItem is too slow past ~100k points, so every view change paints the cells
into an index image (which cell owns each pixel; also used for hover) and colours it through a
lookup table. The selection is drawn last and, when small, outlined by a scatter overlay.
Tools: pan/zoom, lasso and rectangle (Shift adds, Ctrl/Alt subtracts, Esc cancels).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QStringListModel, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QLinearGradient, QPainter, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QCompleter,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.palette import PALETTE
from ..core.selection import (
    MODE_ADD,
    MODE_REPLACE,
    MODE_SUBTRACT,
    points_in_polygon,
    points_in_rect,
    rows_in_categories,
)

TOOL_PAN = "pan"
TOOL_LASSO = "lasso"
TOOL_RECT = "rectangle"
BACKGROUND = (255, 255, 255, 255)
DIMMED = np.array([225, 225, 225, 255], dtype=np.uint8)
NO_COLOUR = "(none)"
MAX_OVERLAY = 20_000
"""Selections up to this size are also outlined by a ScatterPlotItem (fast enough)."""
MAX_IMAGE_SIDE = 4096


def category_colours(n: int) -> np.ndarray:
    """``n`` distinct RGBA colours (uint8, n × 4): a 20-colour palette, then evenly spaced hues."""
    if n <= len(PALETTE):
        return np.array([QColor(c).getRgb() for c in PALETTE[:n]], dtype=np.uint8).reshape(-1, 4)
    return np.array([pg.intColor(i, hues=n).getRgb() for i in range(n)], dtype=np.uint8)


def gene_colours(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """RGBA colours (n × 4) of ``values`` scaled from 0 to their maximum through ``cmap``."""
    lut = pg.colormap.get(cmap).getLookupTable(nPts=256, alpha=True)
    top = float(values.max()) if len(values) else 0.0
    scaled = values / top if top > 0 else np.zeros_like(values)
    return lut[np.clip(scaled * 255, 0, 255).astype(np.intp)].astype(np.uint8)


def point_radius(n_visible: int) -> int:
    """Point radius in pixels: single pixels for dense clouds, small discs for sparse ones."""
    return 0 if n_visible > 300_000 else 1 if n_visible > 30_000 else 2 if n_visible > 3_000 else 3


def rasterize(
    xy: np.ndarray,
    ids: np.ndarray,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    shape: tuple[int, int],
) -> np.ndarray:
    """Index image (``shape`` = height × width, int32): which of ``ids`` owns each pixel, else -1.

    ``xy`` are the points in drawing order (later points cover earlier ones); row 0 of the
    image is the bottom of ``y_range``.
    """
    h, w = shape
    out = np.full(h * w, -1, dtype=np.int32)
    sx = w / max(x_range[1] - x_range[0], 1e-12)
    sy = h / max(y_range[1] - y_range[0], 1e-12)
    fx = (xy[:, 0] - np.float32(x_range[0])) * np.float32(sx)
    fy = (xy[:, 1] - np.float32(y_range[0])) * np.float32(sy)
    keep = (fx >= 0) & (fx < w) & (fy >= 0) & (fy < h)
    px, py, idx = fx[keep].astype(np.int32), fy[keep].astype(np.int32), ids[keep]
    r = point_radius(len(idx))
    offsets = [
        (dx, dy)
        for dx in range(-r, r + 1)
        for dy in range(-r, r + 1)
        if dx * dx + dy * dy <= r * r + r
    ]
    for dx, dy in sorted(offsets, key=lambda o: -(o[0] ** 2 + o[1] ** 2)):  # centres last
        if dx == dy == 0:
            out[py * w + px] = idx
            continue
        qx, qy = px + dx, py + dy
        ok = (qx >= 0) & (qx < w) & (qy >= 0) & (qy < h)
        out[qy[ok] * w + qx[ok]] = idx[ok]
    return out.reshape(h, w)


class _ToolViewBox(pg.ViewBox):
    """A ViewBox whose left-drag draws a lasso or rectangle instead of panning (per tool)."""

    def __init__(self, on_shape: Callable[[str, np.ndarray, str], None]) -> None:
        super().__init__()
        self.tool = TOOL_PAN
        self._on_shape = on_shape
        self._trace: list[tuple[float, float]] = []
        self.outline = pg.PlotCurveItem(pen=pg.mkPen("#d62728", width=2))
        self.outline.setZValue(10)
        self.addItem(self.outline, ignoreBounds=True)

    def polygon(self) -> np.ndarray:
        """The polygon being drawn (view coordinates)."""
        pts = np.array(self._trace, dtype=np.float64).reshape(-1, 2)
        if self.tool == TOOL_RECT and len(pts) >= 2:
            (x0, y0), (x1, y1) = pts[0], pts[-1]
            return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        return pts

    def cancel_shape(self) -> None:
        self._trace = []
        self.outline.setData([], [])

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802, ANN001
        if self.tool == TOOL_PAN or ev.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        if ev.isStart():
            start = self.mapSceneToView(ev.buttonDownScenePos())
            self._trace = [(start.x(), start.y())]
        elif not self._trace:  # cancelled with Esc: ignore the rest of this drag
            return
        last = self.mapViewToScene(pg.Point(*self._trace[-1]))
        if (ev.scenePos() - last).manhattanLength() < 3 and not ev.isFinish():
            return  # fewer vertices keep the hit test fast at 1M cells
        p = self.mapSceneToView(ev.scenePos())
        self._trace.append((p.x(), p.y()))
        poly = self.polygon()
        closed = np.vstack([poly, poly[:1]])
        self.outline.setData(closed[:, 0], closed[:, 1])
        if ev.isFinish():
            mods = ev.modifiers()
            mode = MODE_ADD if mods & Qt.KeyboardModifier.ShiftModifier else MODE_REPLACE
            subtract = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
            mode = MODE_SUBTRACT if mods & subtract else mode
            self.cancel_shape()
            self._on_shape(self.tool, poly, mode)


class ColourBar(QWidget):
    """A vertical colour bar with the value range of the gene being shown."""

    def __init__(self) -> None:
        super().__init__()
        self.setFixedWidth(70)
        self.title, self.low, self.high = "", 0.0, 1.0
        self._lut = pg.colormap.get("viridis").getLookupTable(nPts=16, alpha=True)

    def set_range(self, title: str, low: float, high: float) -> None:
        self.title, self.low, self.high = title, low, high
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802, ANN001
        p = QPainter(self)
        bar = QRectF(8, 22, 16, max(10, self.height() - 44))
        grad = QLinearGradient(bar.bottomLeft(), bar.topLeft())
        for i, c in enumerate(self._lut):
            grad.setColorAt(i / (len(self._lut) - 1), QColor(*map(int, c)))
        p.fillRect(bar, grad)
        p.drawText(4, 14, self.title)
        p.drawText(int(bar.right()) + 4, int(bar.top()) + 8, f"{self.high:.2g}")
        p.drawText(int(bar.right()) + 4, int(bar.bottom()), f"{self.low:.2g}")
        p.end()


class EmbeddingView(QWidget):
    """Embedding picker, colouring (category legend or gene colour bar), tools and the plot."""

    selection_made = Signal(object, str)  # rows (int64 array), mode
    embedding_requested = Signal(str)
    gene_requested = Signal(str)
    pca_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.xy = np.zeros((0, 2), dtype=np.float32)
        self.obs = pd.DataFrame()
        self.cell_ids = np.zeros(0, dtype=object)
        self.colour_column: str | None = None
        self.gene: str | None = None
        self.hidden: set[str] = set()
        self.selected = np.zeros(0, dtype=np.int64)
        self.last_render_ms = 0.0
        self._base = np.zeros((0, 4), dtype=np.uint8)
        self._lut = np.zeros(1, dtype=np.uint32)
        self._draw_xy = self.xy
        self._draw_ids = np.zeros(0, dtype=np.int32)
        self._index = np.full((1, 1), -1, dtype=np.int32)
        self._frame = ((0.0, 1.0), (0.0, 1.0))
        self._build()
        self._timer = QTimer(self, singleShot=True, interval=0)
        self._timer.timeout.connect(self.render_now)
        self.box.sigRangeChanged.connect(self._timer.start)
        self.box.sigResized.connect(self._timer.start)
        self.plot.scene().sigMouseMoved.connect(self._hover)

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.embedding_box = QComboBox(toolTip="Embedding (obsm)")
        self.embedding_box.currentTextChanged.connect(
            lambda t: self.embedding_requested.emit(t) if t else None
        )
        self.pca_button = QPushButton("Compute PCA")
        self.pca_button.setToolTip("Compute a PCA of the expression values (obsm has none)")
        self.pca_button.clicked.connect(self.pca_requested)
        self.colour_box = QComboBox(toolTip="Colour cells by an obs column")
        self.colour_box.currentTextChanged.connect(self._colour_chosen)
        self.gene_edit = QLineEdit(placeholderText="gene…", clearButtonEnabled=True)
        self.gene_edit.setToolTip("Colour by a gene's expression (Enter)")
        self.gene_model = QStringListModel(self)
        completer = QCompleter(self.gene_model, self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.gene_edit.setCompleter(completer)
        self.gene_edit.returnPressed.connect(self._gene_entered)
        self.tool_group = QButtonGroup(self)
        bar = QHBoxLayout()
        for w in (QLabel("Embedding"), self.embedding_box, self.pca_button, QLabel("Colour")):
            bar.addWidget(w)
        bar.addWidget(self.colour_box, 1)
        bar.addWidget(self.gene_edit, 1)
        for tool, key in ((TOOL_PAN, "P"), (TOOL_LASSO, "L"), (TOOL_RECT, "R")):
            button = QToolButton(text=tool.capitalize(), checkable=True)
            button.setToolTip(f"{tool.capitalize()} ({key}); Shift adds, Ctrl subtracts")
            button.setProperty("tool", tool)
            button.setChecked(tool == TOOL_PAN)
            self.tool_group.addButton(button)
            bar.addWidget(button)
        self.tool_group.buttonClicked.connect(lambda b: self.set_tool(b.property("tool")))

        self.box = _ToolViewBox(self._shape_drawn)
        self.box.setAspectLocked(True)
        self.plot = pg.PlotWidget(viewBox=self.box, background="w")
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMenuEnabled(False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image, ignoreBounds=True)
        self.overlay = pg.ScatterPlotItem(size=7, pen=pg.mkPen("k", width=1), brush=None)
        self.overlay.setZValue(5)
        self.box.addItem(self.overlay, ignoreBounds=True)
        self.legend = QListWidget(toolTip="Click the box to hide/show; double-click to select")
        self.legend.itemChanged.connect(self._legend_toggled)
        self.legend.itemDoubleClicked.connect(
            lambda item: self.select_categories([item.data(Qt.ItemDataRole.UserRole)])
        )
        self.colour_bar = ColourBar()
        self.side = QStackedWidget()
        self.side.addWidget(self.legend)
        self.side.addWidget(self.colour_bar)
        self.side.setMaximumWidth(320)
        self.hover_label = QLabel(
            " ", textInteractionFlags=Qt.TextInteractionFlag.TextSelectableByMouse
        )
        middle = QHBoxLayout()
        middle.addWidget(self.plot, 1)
        middle.addWidget(self.side)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(bar)
        layout.addLayout(middle, 1)
        layout.addWidget(self.hover_label)

    # -- data ----------------------------------------------------------------------------------
    def set_dataset(
        self,
        obs: pd.DataFrame,
        cell_ids: np.ndarray,
        embeddings: list[str],
        categories: list[str],
        genes: list[str],
    ) -> None:
        """A new dataset: fill the pickers; the caller then sends the first embedding."""
        self.obs, self.cell_ids = obs, cell_ids
        self.selected = np.zeros(0, dtype=np.int64)
        self.gene, self.colour_column, self.hidden = None, None, set()
        self.gene_model.setStringList(genes)
        for box, items in (
            (self.colour_box, [NO_COLOUR, *categories]),
            (self.embedding_box, embeddings),
        ):
            box.blockSignals(True)
            box.clear()
            box.addItems(items)
            box.blockSignals(False)
        self.pca_button.setVisible(not embeddings)
        self.colour_box.setCurrentIndex(1 if categories else 0)
        self._colour_chosen(self.colour_box.currentText())

    def add_embedding(self, name: str) -> None:
        """List a computed embedding and switch to it."""
        if self.embedding_box.findText(name) < 0:
            self.embedding_box.addItem(name)
        self.embedding_box.setCurrentText(name)
        self.pca_button.hide()

    def add_category(self, column: str, show: bool = True) -> None:
        """List a new obs column (added to ``obs`` in memory) and colour by it when ``show``."""
        if self.colour_box.findText(column) < 0:
            self.colour_box.addItem(column)
        if show:
            if self.colour_box.currentText() == column:
                self._colour_chosen(column)  # same name, new values: refresh legend and colours
            else:
                self.colour_box.setCurrentText(column)

    def set_embedding(self, xy: np.ndarray) -> None:
        """Show the first two columns of ``xy`` (cells × d) and fit the view to them."""
        self.xy = np.ascontiguousarray(xy[:, :2], dtype=np.float32)
        self._recolour()
        if len(self.xy):
            lo, hi = np.nanmin(self.xy, axis=0), np.nanmax(self.xy, axis=0)
            x_range, y_range = (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))
            self.box.setRange(xRange=x_range, yRange=y_range, padding=0.04)
        self.render_now()

    def colour_by_gene(self, gene: str, values: np.ndarray) -> None:
        """Colour cells by ``values`` (one per cell), the highest drawn on top."""
        self.gene, self.colour_column = gene, None
        self._gene_values = values
        self.colour_box.blockSignals(True)
        self.colour_box.setCurrentIndex(-1)
        self.colour_box.blockSignals(False)
        self.gene_edit.setText(gene)
        self.colour_bar.set_range(gene, 0.0, float(values.max()) if len(values) else 0.0)
        self.side.setCurrentWidget(self.colour_bar)
        self._recolour()

    def set_selection(self, rows: np.ndarray) -> None:
        """Highlight ``rows`` (the others are greyed)."""
        self.selected = np.asarray(rows, dtype=np.int64)
        self._recolour()

    def set_tool(self, tool: str) -> None:
        self.box.cancel_shape()
        self.box.tool = tool
        for button in self.tool_group.buttons():
            button.setChecked(button.property("tool") == tool)

    def cancel_shape(self) -> None:
        self.box.cancel_shape()

    # -- selection -----------------------------------------------------------------------------
    def select_polygon(self, polygon: np.ndarray, mode: str = MODE_REPLACE) -> None:
        self._emit(np.flatnonzero(points_in_polygon(self.xy, polygon)), mode)

    def select_rect(self, corner1, corner2, mode: str = MODE_REPLACE) -> None:  # noqa: ANN001
        self._emit(np.flatnonzero(points_in_rect(self.xy, corner1, corner2)), mode)

    def select_categories(self, categories: list[str], mode: str = MODE_REPLACE) -> None:
        if self.colour_column is not None:
            self._emit(rows_in_categories(self.obs[self.colour_column], categories), mode)

    def _emit(self, rows: np.ndarray, mode: str) -> None:
        if self.hidden and self.colour_column is not None:  # hidden cells cannot be picked
            keep = rows_in_categories(self.obs[self.colour_column], self.hidden)
            rows = np.setdiff1d(rows, keep)
        self.selection_made.emit(rows.astype(np.int64), mode)

    def _shape_drawn(self, tool: str, poly: np.ndarray, mode: str) -> None:
        if tool == TOOL_RECT and len(poly) == 4:
            self.select_rect(poly[0], poly[2], mode)
        else:
            self.select_polygon(poly, mode)

    # -- colouring -----------------------------------------------------------------------------
    def _colour_chosen(self, column: str) -> None:
        if not column:
            return
        self.gene = None
        self.colour_column = None if column == NO_COLOUR else column
        self.hidden = set()
        self._fill_legend()
        self.side.setCurrentWidget(self.legend)
        self._recolour()

    def _category_text(self) -> pd.Series:
        col = self.obs[self.colour_column]
        return col.astype(object).where(col.notna(), "NA").astype(str)

    def _fill_legend(self) -> None:
        self.legend.blockSignals(True)
        self.legend.clear()
        if self.colour_column is not None:
            counts = self._category_text().value_counts()
            names = list(self._categories())
            colours = category_colours(len(names))
            for name, rgba in zip(names, colours, strict=True):
                item = QListWidgetItem(f"{name}  {int(counts.get(name, 0)):,}")
                pix = QPixmap(12, 12)
                pix.fill(QColor(*map(int, rgba)))
                item.setIcon(QIcon(pix))
                item.setData(Qt.ItemDataRole.UserRole, name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked)
                self.legend.addItem(item)
        self.legend.blockSignals(False)

    def _categories(self) -> list[str]:
        col = self.obs[self.colour_column]
        if isinstance(col.dtype, pd.CategoricalDtype):
            names = [str(c) for c in col.cat.categories]
            return names + (["NA"] if col.isna().any() else [])
        return sorted(self._category_text().unique())

    def _legend_toggled(self, item: QListWidgetItem) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        if item.checkState() == Qt.CheckState.Checked:
            self.hidden.discard(name)
        else:
            self.hidden.add(name)
        self._recolour()

    def set_category_visible(self, name: str, visible: bool) -> None:
        """Show or hide one category (as clicking its legend box)."""
        for i in range(self.legend.count()):
            item = self.legend.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == name:
                state = Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked
                item.setCheckState(state)

    def _recolour(self) -> None:
        """Recompute per-cell colours and the drawing order (not per view change)."""
        n = len(self.xy)
        if len(self.obs) != n:
            return
        rng = np.random.default_rng(0)
        order = rng.permutation(n).astype(np.int32)  # no category systematically on top
        colours = np.tile(np.array([[70, 110, 180, 255]], np.uint8), (n, 1))
        if self.gene is not None:
            colours = gene_colours(self._gene_values)
            order = np.argsort(self._gene_values, kind="stable").astype(np.int32)
        elif self.colour_column is not None:
            text = self._category_text()
            names = self._categories()
            codes = pd.Categorical(text, categories=names).codes
            colours = category_colours(len(names))[codes]
            if self.hidden:
                order = order[~text.isin(self.hidden).to_numpy()[order]]
        if len(self.selected):
            mask = np.zeros(n, dtype=bool)
            mask[self.selected] = True
            colours = np.where(mask[:, None], colours, DIMMED)
            order = np.concatenate([order[~mask[order]], order[mask[order]]])
        self._base = np.ascontiguousarray(colours, dtype=np.uint8)
        lut = np.vstack([self._base, np.array([BACKGROUND], np.uint8)])
        self._lut = lut.view(np.uint32).ravel()
        self._draw_ids, self._draw_xy = order, self.xy[order]
        shown = self.selected if len(self.selected) <= MAX_OVERLAY else self.selected[:0]
        self.overlay.setData(self.xy[shown, 0], self.xy[shown, 1])
        self._timer.start()

    # -- rendering and hover -------------------------------------------------------------------
    def render_now(self) -> float:
        """Rasterise the visible cloud at the view's pixel size; returns the time taken (ms)."""
        t0 = time.perf_counter()
        (x0, x1), (y0, y1) = self.box.viewRange()
        ratio = self.plot.devicePixelRatioF()
        w = int(min(MAX_IMAGE_SIDE, max(1, self.box.width() * ratio)))
        h = int(min(MAX_IMAGE_SIDE, max(1, self.box.height() * ratio)))
        index = rasterize(self._draw_xy, self._draw_ids, (x0, x1), (y0, y1), (h, w))
        self._index, self._frame = index, ((x0, x1), (y0, y1))
        rgba = self._lut[np.where(index >= 0, index, len(self._lut) - 1)]
        self.image.setImage(rgba.view(np.uint8).reshape(h, w, 4), autoLevels=False)
        self.image.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        self.last_render_ms = (time.perf_counter() - t0) * 1000
        return self.last_render_ms

    def image_pixels(self) -> int:
        """How many pixels show a cell in the last render."""
        return int(np.sum(self._index >= 0))

    def cell_at(self, x: float, y: float, reach: int = 3) -> int | None:
        """The cell drawn at (or within ``reach`` pixels of) view point (x, y), if any."""
        (x0, x1), (y0, y1) = self._frame
        h, w = self._index.shape
        px, py = int((x - x0) / (x1 - x0) * w), int((y - y0) / (y1 - y0) * h)
        if not (0 <= px < w and 0 <= py < h):
            return None
        win = self._index[max(0, py - reach) : py + reach + 1, max(0, px - reach) : px + reach + 1]
        hits = np.argwhere(win >= 0)
        if not len(hits):
            return None
        centre = np.array([py - max(0, py - reach), px - max(0, px - reach)])
        r, c = hits[np.argmin(np.sum((hits - centre) ** 2, axis=1))]
        return int(win[r, c])

    def describe_cell(self, row: int) -> str:
        """One line for the hover label: cell id and its obs values."""
        values = ", ".join(f"{k}: {v}" for k, v in self.obs.iloc[row].items())
        gene = f" · {self.gene}: {self._gene_values[row]:.3g}" if self.gene else ""
        return f"{self.cell_ids[row]} · {values}{gene}"

    def _hover(self, scene_pos) -> None:  # noqa: ANN001
        if not len(self.xy) or not self.box.sceneBoundingRect().contains(scene_pos):
            return
        p = self.box.mapSceneToView(scene_pos)
        row = self.cell_at(p.x(), p.y())
        self.hover_label.setText(self.describe_cell(row) if row is not None else " ")

    def _gene_entered(self) -> None:
        gene = self.gene_edit.text().strip()
        if gene:
            self.gene_requested.emit(gene)
