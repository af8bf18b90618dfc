"""Region thumbnails cut from their images on demand, with small LRU caches (Qt-free)."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from app.images import read_image


class CropCache:
    def __init__(self, size=96, margin=0.1, max_crops=4096, max_image_bytes=512 << 20):
        self.size, self.margin = size, margin
        self.max_crops, self.max_image_bytes = max_crops, max_image_bytes
        self._crops: OrderedDict = OrderedDict()
        self._images: OrderedDict = OrderedDict()
        self.unreadable: dict[str, str] = {}  # path -> why (asked once, not on every hover)

    @staticmethod
    def _touch(cache, key, value, limit):
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)

    def image(self, path) -> np.ndarray | None:
        path = str(path)
        if path in self._images:
            self._images.move_to_end(path)
            return self._images[path]
        if path in self.unreadable or not Path(path).is_file():
            self.unreadable.setdefault(path, "file not found")
            return None
        try:
            rgb = read_image(path)
        except Exception as exc:  # noqa: BLE001 - a thumbnail is never worth an error dialog
            self.unreadable[path] = str(exc)
            return None
        self._images[path] = rgb  # keep recent images up to a byte budget (small ones: many)
        while len(self._images) > 1 and sum(a.nbytes for a in self._images.values()) > self.max_image_bytes:
            self._images.popitem(last=False)
        return rgb

    def crop(self, path, corners) -> np.ndarray | None:
        """RGB uint8 thumbnail (longest side ``size``) of the box with a little context, or None
        when the image cannot be read or the box lies outside it."""
        key = (str(path), tuple(float(v) for v in corners))
        if key in self._crops:
            self._crops.move_to_end(key)
            return self._crops[key]
        rgb = self.image(path)
        if rgb is None:
            return None
        x1, y1, x2, y2 = key[1]
        mx, my = (x2 - x1) * self.margin, (y2 - y1) * self.margin
        h, w = rgb.shape[:2]
        a, b = int(max(np.floor(x1 - mx), 0)), int(max(np.floor(y1 - my), 0))
        c, d = int(min(np.ceil(x2 + mx), w)), int(min(np.ceil(y2 + my), h))
        if c <= a or d <= b:
            return None
        patch = rgb[b:d, a:c]
        scale = self.size / max(patch.shape[:2])
        size = (max(1, round(patch.shape[1] * scale)), max(1, round(patch.shape[0] * scale)))
        thumb = np.ascontiguousarray(cv2.resize(patch, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
        self._touch(self._crops, key, thumb, self.max_crops)
        return thumb
