"""The image canvas: boxes you can draw, select, move and resize, plus the bin-grid overlay."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.gui.qt_util import qt_signals_blocked

BOX_PEN = pg.mkPen((255, 200, 0), width=2, cosmetic=True)
SELECTED_PEN = pg.mkPen((0, 220, 255), width=3, cosmetic=True)
GRID_PEN = pg.mkPen((255, 80, 80, 200), width=1, cosmetic=True)
LABEL_LIMIT = 150  # above this many boxes, only the selected box shows its label
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
    clicked = QtCore.Signal(float, float, bool)  # x, y, double

    def __init__(self):
        super().__init__(invertY=True, lockAspect=True)
        self.draw_mode = False
        self.canvas = None
        self._moving = False
        self._rubber = QtWidgets.QGraphicsRectItem()
        self._rubber.setPen(DRAW_PEN)
        self._rubber.setVisible(False)
        self.addItem(self._rubber, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() == QtCore.Qt.MouseButton.LeftButton and not self.draw_mode and self.canvas is not None:
            # Dragging an unselected box selects it and moves it; elsewhere the view pans.
            if ev.isStart():
                press = self.mapSceneToView(ev.buttonDownScenePos())
                self._moving = self.canvas.begin_move(press.x(), press.y())
            if self._moving:
                ev.accept()
                start = self.mapSceneToView(ev.buttonDownScenePos())
                now = self.mapSceneToView(ev.scenePos())
                self.canvas.move_selected(now.x() - start.x(), now.y() - start.y(), ev.isFinish())
                if ev.isFinish():
                    self._moving = False
                return
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
            p = self.mapSceneToView(ev.scenePos())
            self.clicked.emit(p.x(), p.y(), bool(ev.double()))
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
        # Unselected boxes are one path item (thousands stay cheap); only the selected box is an
        # editable ROI with handles.
        self.outlines = QtWidgets.QGraphicsPathItem()
        self.outlines.setPen(BOX_PEN)
        self.outlines.setZValue(10)
        self.view.addItem(self.outlines, ignoreBounds=True)
        self.labels = []
        self.boxes = {}  # id -> Box, in document order
        self._corners = np.zeros((0, 4))  # for hit tests; empty until boxes are set
        self._ids = np.zeros(0, np.int64)
        self.image_size = None
        self.editor = None
        self.selected = -1
        self._drag_start = None
        self._move_origin = None
        self.view.canvas = self
        self.view.drawn.connect(self.box_drawn)
        self.view.clicked.connect(self._clicked)
        self.scene().sigMouseMoved.connect(self._mouse_moved)

    # --- image ---
    def set_image(self, rgb, size=None):
        """Show ``rgb``; ``size`` (w, h) of the original when ``rgb`` is a smaller display copy,
        so that view coordinates stay original-image pixels."""
        if rgb is None:
            self.image_item.clear()
            self.image_size = None
            return
        self.image_item.setImage(rgb, autoLevels=False, levels=(0, 255))
        self.image_size = size or (rgb.shape[1], rgb.shape[0])
        self.image_item.setRect(QtCore.QRectF(0, 0, *self.image_size))
        self.fit()

    def fit(self):
        if self.image_item.image is not None and self.image_size:
            self.view.setRange(QtCore.QRectF(0, 0, *self.image_size), padding=0.02)

    def set_draw_mode(self, on):
        self.view.draw_mode = bool(on)
        cursor = QtCore.Qt.CursorShape.CrossCursor if on else QtCore.Qt.CursorShape.ArrowCursor
        self.viewport().setCursor(cursor)
        self._editor_takes_mouse()

    def _editor_takes_mouse(self):
        """In draw mode a drag that starts on the selected box draws a new box: the editor and
        its handles let the mouse through to the view."""
        if self.editor is None:
            return
        drawing = self.view.draw_mode
        buttons = QtCore.Qt.MouseButton.NoButton if drawing else QtCore.Qt.MouseButton.LeftButton
        self.editor.setAcceptedMouseButtons(buttons)
        self.editor.translatable = not drawing  # pyqtgraph claims hover drags for translatable ROIs
        for handle in self.editor.getHandles():
            handle.setVisible(not drawing)  # no resizing while drawing: the handles would take the drag

    # --- boxes ---
    def set_boxes(self, boxes):
        """Show ``boxes`` (called on image switch, after edits, undo and redo)."""
        self.boxes = {b.id: b for b in boxes}
        self._corners = np.array([b.corners() for b in boxes], dtype=np.float64).reshape(-1, 4)
        self._ids = np.array([b.id for b in boxes], dtype=np.int64)
        if self.selected not in self.boxes:
            self.selected = -1
        self._rebuild()

    def _rebuild(self):
        path = QtGui.QPainterPath()
        for b in self.boxes.values():
            if b.id != self.selected:
                path.addRect(QtCore.QRectF(b.x1, b.y1, b.width, b.height))
        self.outlines.setPath(path)
        for item in self.labels:
            self.view.removeItem(item)
        self.labels = []
        if len(self.boxes) <= LABEL_LIMIT:
            for b in self.boxes.values():
                if b.id != self.selected:
                    text = pg.TextItem(b.label, anchor=(0, 1), color=(255, 230, 120))
                    text.setPos(b.x1, b.y1)
                    self.view.addItem(text, ignoreBounds=True)
                    self.labels.append(text)
        box = self.boxes.get(self.selected)
        if box is None:
            if self.editor is not None:
                self.view.removeItem(self.editor)
                self.editor = None
            return
        if self.editor is None or self.editor.box_id != box.id:
            if self.editor is not None:
                self.view.removeItem(self.editor)
            self.editor = BoxItem(box.id, *box.corners())
            self.editor.set_selected(True)
            self.editor.sigRegionChangeStarted.connect(self._change_started)
            self.editor.sigRegionChanged.connect(self._changing)
            self.editor.sigRegionChangeFinished.connect(self._change_finished)
            self.editor.sigClicked.connect(self._editor_clicked)
            self.view.addItem(self.editor)
            self._editor_takes_mouse()
        elif tuple(round(v, 6) for v in self.editor.corners()) != tuple(round(v, 6) for v in box.corners()):
            with qt_signals_blocked(self.editor):
                self.editor.set_corners(*box.corners())
        self.editor.set_label(box.label)

    def box_at(self, x, y):
        """The smallest box containing (x, y), or -1."""
        if len(self._ids) == 0:
            return -1
        c = self._corners
        inside = (c[:, 0] <= x) & (x <= c[:, 2]) & (c[:, 1] <= y) & (y <= c[:, 3])
        if not inside.any():
            return -1
        area = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
        return int(self._ids[np.where(inside)[0][np.argmin(area[inside])]])

    def select(self, box_id, emit=False):
        self.selected = box_id if box_id in self.boxes else -1
        self._rebuild()
        if emit:
            self.box_selected.emit(self.selected)

    def _clicked(self, x, y, double):
        hit = self.box_at(x, y)
        self.select(hit, emit=True)
        if double and hit >= 0:
            self.box_activated.emit(hit)

    def _editor_clicked(self, roi, ev):
        if ev.double():
            self.box_activated.emit(roi.box_id)

    def begin_move(self, x, y):
        """A drag started at (x, y) outside the editor: grab the box there, if any."""
        if self.image_size is None:
            return False
        hit = self.box_at(x, y)
        if hit < 0:
            return False
        self.select(hit, emit=True)
        self._move_origin = self.editor.corners()
        self._drag_start = self._move_origin
        return True

    def move_selected(self, dx, dy, finish):
        x1, y1, x2, y2 = self._move_origin
        self.editor.set_corners(x1 + dx, y1 + dy, x2 + dx, y2 + dy)  # emits sigRegionChanged
        if finish:
            self._change_finished(self.editor)

    def _change_started(self, roi):
        self._drag_start = roi.corners()

    def _changing(self, roi):
        self.box_moving.emit(roi.box_id, *roi.corners())

    def _change_finished(self, roi):
        old, self._drag_start = self._drag_start, None
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

