"""Read-only views: a pooled grid with values on hover, and clickable tile mosaics (gallery and
feature channels), each a single ImageItem however many tiles it shows. NaN pixels are drawn
transparent (gaps between tiles, empty slots, boxes that could not be pooled)."""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

OUTLINE_PEN = pg.mkPen((0, 220, 255), width=2, cosmetic=True)


class ImagePanel(pg.GraphicsLayoutWidget):
    """A titled ImageItem with a colormap; emits the pixel under the mouse and clicks.

    The title is a QLabel laid over the top margin, elided to the panel's width, so a long title
    can never widen the plot beyond the panel (a plot title would)."""

    hovered = QtCore.Signal(int, int)
    clicked = QtCore.Signal(int, int)
    TITLE_HEIGHT = 22

    def __init__(self, title="", parent=None):
        super().__init__(parent)
        self.setBackground("#202020")
        self.ci.setContentsMargins(4, self.TITLE_HEIGHT, 4, 4)
        self.vb = self.addViewBox(invertY=True, lockAspect=True, enableMenu=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.image)
        self.outline = QtWidgets.QGraphicsRectItem()
        self.outline.setPen(OUTLINE_PEN)
        self.outline.setVisible(False)
        self.vb.addItem(self.outline)
        self.title = QtWidgets.QLabel(self)
        self.title.setStyleSheet("color: #c8c8c8; background: transparent;")
        self.title.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self._title = ""
        self.set_title(title)
        self.set_colormap("viridis")
        self.scene().sigMouseMoved.connect(self._moved)
        self.scene().sigMouseClicked.connect(self._clicked)

    def set_colormap(self, name):
        self.image.setColorMap(pg.colormap.get(name))

    def set_title(self, text):
        self._title = text
        self._layout_title()
        self.setToolTip(text)

    def title_text(self) -> str:
        return self._title

    def _layout_title(self):
        width = max(self.width() - 8, 20)
        self.title.setGeometry(4, 2, width, self.TITLE_HEIGHT - 4)
        self.title.setText(self.title.fontMetrics().elidedText(self._title, QtCore.Qt.TextElideMode.ElideRight, width))

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        if hasattr(self, "title"):  # resizeEvent also runs inside the base __init__
            self._layout_title()

    def show_array(self, a, levels=None):
        a = np.asarray(a, dtype=np.float32)
        if levels is None:
            finite = a[np.isfinite(a)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            levels = (lo, hi if hi > lo else lo + 1e-6)
        self.image.setImage(a, levels=levels, autoLevels=False)
        self.vb.enableAutoRange()  # re-fits on resize too, until the user zooms

    def blank(self, title=None):
        self.image.clear()
        self.set_outline(None)
        if title is not None:
            self.set_title(title)

    def set_outline(self, rect=None):
        if rect is None:
            self.outline.setVisible(False)
        else:
            self.outline.setRect(QtCore.QRectF(*rect))
            self.outline.setVisible(True)

    def _pixel(self, scene_pos):
        if self.image.image is None:
            return None
        p = self.image.mapFromScene(scene_pos)
        r, c = int(math.floor(p.y())), int(math.floor(p.x()))
        h, w = self.image.image.shape[:2]
        return (r, c) if 0 <= r < h and 0 <= c < w else None

    def _moved(self, pos):
        rc = self._pixel(pos)
        if rc:
            self.hovered.emit(*rc)

    def _clicked(self, ev):
        rc = self._pixel(ev.scenePos())
        if rc and ev.button() == QtCore.Qt.MouseButton.LeftButton:
            self.clicked.emit(*rc)
