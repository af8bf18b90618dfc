"""All of the map's points as one image at screen resolution. Drawing 100k markers one by one
(pyqtgraph's ScatterPlotItem, even one item per colour) cost 40-550 ms per pan/zoom frame here;
this item maps the points to device pixels, keeps the top colour per pixel, widens it to a disc
of the marker's size (a max filter) and draws one image: a few ms, and the same picture."""
from __future__ import annotations

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui


class PointsRaster(pg.GraphicsObject):
    def __init__(self, size=5, alpha=230):
        super().__init__()
        self.alpha = alpha
        self.set_size(size)
        self.xy = np.zeros((0, 2), np.float32)
        self.rank = np.zeros(0, np.uint16)
        self.lut = np.zeros(1, np.uint32)
        self._key = self._image = self._pixels = None

    def set_size(self, size):
        """The markers' diameter in screen pixels (odd)."""
        self.radius = size // 2
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        self._key = None
        self.update()

    def set_points(self, xy, rank, colours):
        """``xy`` (N, 2) view coordinates; ``rank`` (N,) 1..M, a higher rank drawn on top where
        points overlap; ``colours`` (M, 3) uint8, the colour of each rank."""
        self.xy = np.asarray(xy, np.float32).reshape(-1, 2).copy()
        self.rank = np.clip(np.asarray(rank), 0, 65535).astype(np.uint16)
        rgba = np.concatenate([np.asarray(colours, np.uint8).reshape(-1, 3), np.full((len(colours), 1), self.alpha, np.uint8)], axis=1)
        self.lut = np.concatenate([np.zeros((1, 4), np.uint8), rgba]).view(np.uint32).ravel()  # rank 0: transparent
        self._key = None
        self.informViewBoundsChanged()
        self.update()

    # ------------------------------------------------------------ pyqtgraph item protocol
    def dataBounds(self, ax, frac=1.0, orthoRange=None):
        if not len(self.xy):
            return None, None
        return float(self.xy[:, ax].min()), float(self.xy[:, ax].max())

    def pixelPadding(self):
        return self.radius + 1

    def boundingRect(self):
        """The visible part of the view: the picture is redrawn for whatever the view shows."""
        rect = self.viewRect()
        return QtCore.QRectF() if rect is None else rect

    def viewTransformChanged(self):
        self.prepareGeometryChange()
        super().viewTransformChanged()

    def paint(self, painter, *args):
        tr = painter.transform()
        device = painter.device()
        w, h = device.width(), device.height()
        key = (tr.m11(), tr.m12(), tr.m21(), tr.m22(), tr.dx(), tr.dy(), w, h)
        if key != self._key:
            self._image, self._key = self.render(tr, w, h), key
        painter.save()
        painter.resetTransform()
        painter.drawImage(0, 0, self._image)
        painter.restore()

    # ------------------------------------------------------------ the picture
    def render(self, tr, w, h) -> QtGui.QImage:
        """The points under item-to-device transform ``tr`` as a (h, w) RGBA image."""
        r = self.radius
        x = self.xy[:, 0] * tr.m11() + self.xy[:, 1] * tr.m21() + tr.dx()
        y = self.xy[:, 0] * tr.m12() + self.xy[:, 1] * tr.m22() + tr.dy()
        seen = (x >= -r) & (x < w + r) & (y >= -r) & (y < h + r)
        width = w + 2 * r  # a margin of one radius: a point just outside still shows its edge
        top = np.zeros((h + 2 * r) * width, np.uint16)
        np.maximum.at(top, (y[seen] + r).astype(np.intp) * width + (x[seen] + r).astype(np.intp), self.rank[seen])
        top = cv2.dilate(top.reshape(h + 2 * r, width), self.kernel)[r:r + h, r:r + w]
        pixels = np.ascontiguousarray(self.lut[top])
        self._pixels = pixels  # the image shares this array's memory: keep it alive with the image
        return QtGui.QImage(pixels.data, w, h, 4 * w, QtGui.QImage.Format.Format_RGBA8888)

    def drawn_position(self, i):
        return float(self.xy[i, 0]), float(self.xy[i, 1])
