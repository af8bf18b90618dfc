"""The region map's plot: the points (one scatter item per colour), the rings that mark the
current, similar and selected regions, the lasso/rectangle outline, the legend and the hover card."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets


class _Points(pg.ScatterPlotItem):
    """A scatter that leaves clicks to the view box (which picks in NumPy, not per spot)."""

    def mouseClickEvent(self, ev):
        ev.ignore()

    def updateSpots(self, dataSet=None):
        """Every spot of this item has the item's one style, so look its atlas fragment up once
        instead of once per spot (pyqtgraph 0.14 builds a Python tuple per spot: ~1 s at 100k)."""
        data = self.data if dataSet is None else dataSet
        try:
            fresh = data["sourceRect"]["w"] == 0
            if self.opts["pxMode"] and self.opts["useCache"] and fresh.any():
                first = np.flatnonzero(fresh)[:1]
                style = list(zip(*self._style(["symbol", "size", "pen", "brush"], data=data, idx=first)))
                data["sourceRect"][fresh] = self.fragmentAtlas[style][0]
        except (AttributeError, KeyError, ValueError, TypeError):
            pass  # another pyqtgraph: its own per-spot path below still works
        super().updateSpots(dataSet)


class _MapViewBox(pg.ViewBox):
    """Pan/zoom as usual; a selection tool or a modifier turns a left drag into a lasso or a
    rectangle, and a left click into a pick."""

    def __init__(self, panel):
        super().__init__(enableMenu=False)
        self.panel = panel

    def mouseDragEvent(self, ev, axis=None):
        tool = self.panel.drag_tool(ev.modifiers())
        if ev.button() != QtCore.Qt.MouseButton.LeftButton or tool == "pan":
            return super().mouseDragEvent(ev, axis)
        ev.accept()
        pos = self.mapSceneToView(ev.scenePos())
        if ev.isStart():
            self.panel.shape_started(tool, self.mapSceneToView(ev.buttonDownScenePos()))
        self.panel.shape_moved(pos)
        if ev.isFinish():
            self.panel.shape_finished()

    def mouseClickEvent(self, ev):
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            self.panel.clicked_at(self.mapSceneToView(ev.scenePos()))
        else:
            super().mouseClickEvent(ev)


class MapPlot(pg.GraphicsLayoutWidget):
    def __init__(self, panel, parent=None):
        super().__init__(parent)
        self.setBackground("#1c1c1c")
        self.vb = _MapViewBox(panel)
        self.addItem(self.vb)
        # One scatter item per colour (a label, a bin): pyqtgraph draws a one-brush item from
        # arrays, while per-point brushes cost ~2.7 s per redraw at 100k points (measured).
        self.layers: list[tuple[_Points, np.ndarray]] = []
        self.marks = {name: _Points(pxMode=True, size=size, pen=pg.mkPen(color, width=width), brush=None)
                      for name, size, color, width in (("selection", 9, "w", 1.2), ("similar", 11, (0, 220, 255), 1.5),
                                                       ("current", 16, (255, 220, 0), 2.5))}
        self.outline = pg.PlotCurveItem(pen=pg.mkPen((255, 255, 255), width=1.5, style=QtCore.Qt.PenStyle.DashLine))
        for z, item in enumerate((*self.marks.values(), self.outline)):
            item.setZValue(10 + z)
            self.vb.addItem(item)
        self.legend = QtWidgets.QLabel(self)
        self.legend.setStyleSheet("background: rgba(20,20,20,200); color: #ddd; padding: 4px; border-radius: 3px;")
        self.legend.move(8, 8)
        self.inset = QtWidgets.QLabel(self, visible=False)
        self.inset.setStyleSheet("background: rgba(20,20,20,230); color: #eee; padding: 4px; border: 1px solid #888;")
        self.inset.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)

    def draw_points(self, xy, coloring, mode):
        codes = coloring.codes
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(coloring.colours) + 1))
        groups = sorted(range(len(coloring.colours)), key=lambda c: bounds[c] - bounds[c + 1])  # big first: small on top
        while len(self.layers) < len(groups):
            item = _Points(pxMode=True, size=5, pen=None, hoverable=False)
            self.vb.addItem(item)
            self.layers.append((item, np.zeros(0, np.int64)))
        for n, (item, _) in enumerate(self.layers):
            rows = order[bounds[groups[n]]:bounds[groups[n] + 1]] if n < len(groups) else np.zeros(0, np.int64)
            item.setData(x=xy[rows, 0], y=xy[rows, 1], brush=pg.mkBrush(*coloring.colours[groups[n]], 230) if n < len(groups) else None)
            item.setZValue(n / max(len(groups), 1))
            self.layers[n] = (item, rows)
        rows = "".join(f"<tr><td style='color: rgb{c}'>&#9679;</td><td>{name}</td><td align='right'>&nbsp;{n}</td></tr>"
                       for name, c, n in coloring.legend)
        rings = ("<span style='color:#ffdc00'>&#9711;</span> current &nbsp;<span style='color:#00dcff'>&#9711;</span> similar "
                 "&nbsp;<span style='color:#fff'>&#9711;</span> selected")
        self.legend.setText(f"<b>{mode}</b><table>{rows}</table>{rings}")
        self.legend.adjustSize()

    def drawn_position(self, i):
        """Where region ``i`` is drawn (tests check that the picture follows the model)."""
        for item, rows in self.layers:
            hit = np.flatnonzero(rows == i)
            if len(hit):
                x, y = item.getData()
                return float(x[hit[0]]), float(y[hit[0]])
        return None

    def set_outline(self, points):
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        self.outline.setData(pts[:, 0], pts[:, 1])

    def fit(self):
        items = [item for item, rows in self.layers if len(rows)]
        if items:
            self.vb.autoRange(items=items, padding=0.05)

    def show_card(self, pixmap, scene_pos):
        """The hover card beside the cursor, kept inside the plot; ``None`` hides it."""
        if pixmap is None:
            self.inset.hide()
            return
        self.inset.setPixmap(pixmap)
        self.inset.adjustSize()
        at = self.mapFromScene(scene_pos)
        x = at.x() + 16 if at.x() + 16 + self.inset.width() < self.width() else at.x() - 16 - self.inset.width()
        y = min(max(at.y() - self.inset.height() // 2, 0), max(self.height() - self.inset.height(), 0))
        self.inset.move(int(x), int(y))
        self.inset.show()
        self.inset.raise_()
