"""The region map's plot: the points (one image, ``PointsRaster``), the rings that mark the
current, similar and selected regions, the lasso/rectangle outline, the legend and the hover card."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from app.gui.region_map_raster import PointsRaster


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


def marker_size(n: int) -> int:
    """Markers shrink as points crowd: a folder's few boxes must be easy to see and hit, 100k
    points must not merge into one blot."""
    return 9 if n <= 2_000 else 7 if n <= 20_000 else 5


class MapPlot(pg.GraphicsLayoutWidget):
    def __init__(self, panel, parent=None):
        super().__init__(parent)
        self.setBackground("#1c1c1c")
        self.vb = _MapViewBox(panel)
        self.addItem(self.vb)
        self.points = PointsRaster(size=5)
        self.vb.addItem(self.points)
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
        self.points.set_size(marker_size(len(xy)))
        counts = np.bincount(coloring.codes, minlength=len(coloring.colours))
        on_top = np.argsort(-counts, kind="stable")  # big groups first: small ones drawn over them
        rank = np.empty(len(on_top), np.int64)
        rank[on_top] = np.arange(1, len(on_top) + 1)
        self.points.set_points(xy, rank[coloring.codes], np.asarray(coloring.colours)[on_top])
        rows = "".join(f"<tr><td style='color: rgb{c}'>&#9679;</td><td>{name}</td><td align='right'>&nbsp;{n}</td></tr>"
                       for name, c, n in coloring.legend)
        rings = ("<span style='color:#ffdc00'>&#9711;</span> current &nbsp;<span style='color:#00dcff'>&#9711;</span> similar "
                 "&nbsp;<span style='color:#fff'>&#9711;</span> selected")
        self.legend.setText(f"<b>{mode}</b><table>{rows}</table>{rings}")
        self.legend.adjustSize()

    def drawn_position(self, i):
        """Where region ``i`` is drawn (tests check that the picture follows the model)."""
        return self.points.drawn_position(i) if 0 <= i < len(self.points.xy) else None

    def set_outline(self, points):
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        self.outline.setData(pts[:, 0], pts[:, 1])

    def fit(self):
        """Every point in view, and none under the legend (it sits over the top-left corner)."""
        if len(self.points.xy):
            self.vb.autoRange(items=[self.points], padding=0.05)
            self._clear_legend()

    def _clear_legend(self):
        """If points lie under the legend, widen the range on the left or at the top, whichever
        gives up the smaller share of the plot, so that the data sit beside or below it."""
        box = self.mapFromScene(self.vb.sceneBoundingRect()).boundingRect()  # viewport pixels
        legend = self.legend.geometry().translated(self.viewport().mapFrom(self, QtCore.QPoint(0, 0)))
        if not self.legend.isVisible() or box.width() < 1 or box.height() < 1:
            return
        margin = self.points.radius + 4
        (x0, x1), (y0, y1) = self.vb.viewRange()
        px = box.left() + (self.points.xy[:, 0] - x0) / (x1 - x0) * box.width()
        top_y = y0 if self.vb.yInverted() else y1
        py = box.top() + np.abs(self.points.xy[:, 1] - top_y) / (y1 - y0) * box.height()
        if not np.any((px < legend.right() + margin) & (py < legend.bottom() + margin)):
            return
        left = (legend.right() + margin - box.left()) / box.width()
        top = (legend.bottom() + margin - box.top()) / box.height()
        share = min(left, top)
        if share >= 0.9:  # a legend that covers the plot: nothing sensible to give up
            return
        grow = share / (1 - share)  # the old range then fills the plot less the legend's strip
        if left <= top:
            x0 -= (x1 - x0) * grow
        elif self.vb.yInverted():
            y0 -= (y1 - y0) * grow
        else:
            y1 += (y1 - y0) * grow
        self.vb.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)

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
