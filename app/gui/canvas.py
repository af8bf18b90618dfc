"""The image canvas: boxes you can draw, select, move and resize, plus the bin-grid overlay."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

BOX_PEN = pg.mkPen((255, 200, 0), width=2, cosmetic=True)
SELECTED_PEN = pg.mkPen((0, 220, 255), width=3, cosmetic=True)
GRID_PEN = pg.mkPen((255, 80, 80, 200), width=1, cosmetic=True)
DRAW_PEN = pg.mkPen((0, 255, 120), width=2, style=QtCore.Qt.PenStyle.DashLine, cosmetic=True)


class BoxItem(pg.RectROI):
    """One region: drag to move, corner handles to resize; a gesture ends in one signal."""

    def __init__(self, box_id, x1, y1, x2, y2):
        super().__init__((x1, y1), (max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)), pen=BOX_PEN, movable=True, removable=False)
        self.box_id = box_id
        for pos, center in (((0, 0), (1, 1)), ((1, 0), (0, 1)), ((0, 1), (1, 0))):
            self.addScaleHandle(pos, center)
        self.setAcceptedMouseButtons(QtCore.Qt.MouseButton.LeftButton)
        self.label_item = pg.TextItem(anchor=(0, 1), color=(255, 230, 120))
        self.label_item.setParentItem(self)

    def corners(self):
        pos, size = self.pos(), self.size()
        return (pos.x(), pos.y(), pos.x() + size.x(), pos.y() + size.y())

    def set_corners(self, x1, y1, x2, y2):
        self.setPos((x1, y1), update=False, finish=False)
        self.setSize((max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)), update=True, finish=False)

    def set_label(self, text):
        self.label_item.setText(text)

    def set_selected(self, selected):
        self.setPen(SELECTED_PEN if selected else BOX_PEN)
        self.setZValue(20 if selected else 10)


class DrawingViewBox(pg.ViewBox):
    """Left-drag draws a box in draw mode; otherwise pans. Wheel zooms."""

    drawn = QtCore.Signal(float, float, float, float)
    clicked_empty = QtCore.Signal()

    def __init__(self):
        super().__init__(invertY=True, lockAspect=True)
        self.draw_mode = False
        self._rubber = QtWidgets.QGraphicsRectItem()
        self._rubber.setPen(DRAW_PEN)
        self._rubber.setVisible(False)
        self.addItem(self._rubber, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None):
        if not self.draw_mode or ev.button() != QtCore.Qt.MouseButton.LeftButton:
            return super().mouseDragEvent(ev, axis)
        ev.accept()
        start = self.mapSceneToView(ev.buttonDownScenePos())
        end = self.mapSceneToView(ev.scenePos())
        rect = QtCore.QRectF(start, end).normalized()
        if ev.isFinish():
            self._rubber.setVisible(False)
            if rect.width() >= 1 and rect.height() >= 1:
                self.drawn.emit(rect.left(), rect.top(), rect.right(), rect.bottom())
        else:
            self._rubber.setRect(rect)
            self._rubber.setVisible(True)

    def mouseClickEvent(self, ev):
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            self.clicked_empty.emit()
        else:
            super().mouseClickEvent(ev)


class Canvas(pg.GraphicsView):
    box_drawn = QtCore.Signal(float, float, float, float)
    box_moving = QtCore.Signal(int, float, float, float, float)
    box_moved = QtCore.Signal(int, tuple, tuple)  # id, old corners, new corners
    box_selected = QtCore.Signal(int)  # -1: none
    box_activated = QtCore.Signal(int)  # double-click: relabel
    cursor_moved = QtCore.Signal(float, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view = DrawingViewBox()
        self.setCentralItem(self.view)
        self.image_item = pg.ImageItem(axisOrder="row-major", autoDownsample=True)
        self.view.addItem(self.image_item)
        self.grid_lines = pg.PlotCurveItem(pen=GRID_PEN, connect="pairs")
        self.grid_points = pg.ScatterPlotItem(size=3, pen=None, brush=pg.mkBrush(255, 60, 60, 150))
        for item in (self.grid_lines, self.grid_points):
            item.setZValue(30)
            self.view.addItem(item, ignoreBounds=True)
        self.items: dict[int, BoxItem] = {}
        self.selected = -1
        self._drag_start = {}
        self.view.drawn.connect(self.box_drawn)
        self.view.clicked_empty.connect(lambda: self.select(-1, emit=True))
        self.scene().sigMouseMoved.connect(self._mouse_moved)

    # --- image ---
    def set_image(self, rgb):
        if rgb is None:
            self.image_item.clear()
            return
        self.image_item.setImage(rgb, autoLevels=False, levels=(0, 255))
        self.fit()

    def fit(self):
        if self.image_item.image is not None:
            h, w = self.image_item.image.shape[:2]
            self.view.setRange(QtCore.QRectF(0, 0, w, h), padding=0.02)

    def set_draw_mode(self, on):
        self.view.draw_mode = bool(on)
        cursor = QtCore.Qt.CursorShape.CrossCursor if on else QtCore.Qt.CursorShape.ArrowCursor
        self.viewport().setCursor(cursor)

    # --- boxes ---
    def set_boxes(self, boxes):
        """Replace all items (cheap: called on image switch and on undo/redo)."""
        for item in self.items.values():
            self.view.removeItem(item)
        self.items = {}
        for b in boxes:
            self._add_item(b)
        if self.selected not in self.items:
            self.selected = -1
        self.select(self.selected)

    def _add_item(self, b):
        item = BoxItem(b.id, *b.corners())
        item.set_label(b.label)
        item.sigRegionChangeStarted.connect(self._change_started)
        item.sigRegionChanged.connect(self._changing)
        item.sigRegionChangeFinished.connect(self._change_finished)
        item.sigClicked.connect(self._item_clicked)
        self.view.addItem(item)
        self.items[b.id] = item
        return item

    def update_box(self, b):
        item = self.items.get(b.id)
        if item is None:
            return
        if tuple(round(v, 6) for v in item.corners()) != tuple(round(v, 6) for v in b.corners()):
            item.blockSignals(True)
            item.set_corners(*b.corners())
            item.blockSignals(False)
        item.set_label(b.label)

    def select(self, box_id, emit=False):
        self.selected = box_id if box_id in self.items else -1
        for bid, item in self.items.items():
            item.set_selected(bid == self.selected)
        if emit:
            self.box_selected.emit(self.selected)

    def _item_clicked(self, roi, ev):
        if ev.double():
            self.box_activated.emit(roi.box_id)
        self.select(roi.box_id, emit=True)

    def _change_started(self, roi):
        self._drag_start[roi.box_id] = roi.corners()
        if self.selected != roi.box_id:
            self.select(roi.box_id, emit=True)

    def _changing(self, roi):
        self.box_moving.emit(roi.box_id, *roi.corners())

    def _change_finished(self, roi):
        old = self._drag_start.pop(roi.box_id, None)
        new = roi.corners()
        if old is not None and old != new:
            self.box_moved.emit(roi.box_id, tuple(old), tuple(new))

    # --- overlay ---
    def set_grid(self, lines=None, points=None):
        """``lines``: (N, 2) x/y pairs of segment ends; ``points``: (M, 2) sample positions."""
        if lines is None or len(lines) == 0:
            self.grid_lines.setData([], [])
        else:
            self.grid_lines.setData(lines[:, 0], lines[:, 1])
        if points is None or len(points) == 0:
            self.grid_points.setData([], [])
        else:
            self.grid_points.setData(points[:, 0], points[:, 1])

    def _mouse_moved(self, pos):
        p = self.view.mapSceneToView(pos)
        self.cursor_moved.emit(p.x(), p.y())


def pool_cell_lines(cells, stride):
    """Segments outlining RoIPool's bin cells (feature cell ranges) in image pixels."""
    rows, cols = cells["rows"], cells["cols"]
    segs = []
    x_lo, x_hi = cols.min() * stride, cols.max() * stride
    y_lo, y_hi = rows.min() * stride, rows.max() * stride
    for r0, r1 in rows:
        for y in (r0, r1):
            segs += [(x_lo, y * stride), (x_hi, y * stride)]
    for c0, c1 in cols:
        for x in (c0, c1):
            segs += [(x * stride, y_lo), (x * stride, y_hi)]
    return np.array(segs, dtype=np.float64).reshape(-1, 2)


def align_sample_points(samples, stride):
    """RoIAlign's sample points in image pixels (feature coordinate y -> (y + 0.5) * stride)."""
    ys = samples["ys"].ravel()
    xs = samples["xs"].ravel()
    if ys.size == 0 or xs.size == 0:
        return np.zeros((0, 2))
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([(gx.ravel() + 0.5) * stride, (gy.ravel() + 0.5) * stride], axis=1)
