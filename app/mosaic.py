"""Tiling 2-D arrays into one mosaic image and finding which tile a pixel belongs to (Qt-free;
the gallery and the feature-map mosaic are each one image, however many tiles they hold)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def normalize(a, lo=None, hi=None):
    """Scale to [0, 1] between ``lo`` and ``hi`` (the array's own range by default); NaN stays
    NaN (drawn transparent), a flat array becomes 0."""
    a = np.asarray(a, dtype=np.float32)
    finite = a[np.isfinite(a)]
    lo = (float(finite.min()) if finite.size else 0.0) if lo is None else lo
    hi = (float(finite.max()) if finite.size else 0.0) if hi is None else hi
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.where(np.isnan(a), np.nan, 0.0).astype(np.float32)
    return (a - lo) / (hi - lo)


@dataclass(frozen=True)
class Mosaic:
    """``image``: the tiles with a ``gap`` of NaN between them (NaN is drawn transparent, so an
    unused slot is background, not a tile of the lowest colour)."""

    image: np.ndarray
    columns: int
    tile_shape: tuple[int, int]
    count: int
    gap: int = 1

    def index_at(self, row: int, col: int) -> int | None:
        """The tile under mosaic pixel (row, col), or None for a gap or an empty slot."""
        th, tw = self.tile_shape
        r, rr = divmod(int(row), th + self.gap)
        c, cc = divmod(int(col), tw + self.gap)
        if rr >= th or cc >= tw or c >= self.columns or row < 0 or col < 0:
            return None
        index = r * self.columns + c
        return index if index < self.count else None

    def tile_rect(self, index: int) -> tuple[float, float, float, float]:
        """(x, y, w, h) of tile ``index`` including half the gap around it, for an outline."""
        th, tw = self.tile_shape
        r, c = divmod(index, self.columns)
        return (c * (tw + self.gap) - 0.5, r * (th + self.gap) - 0.5, tw + self.gap, th + self.gap)


def tile(arrays, gap=1, columns=None) -> Mosaic:
    """Tile equally-shaped 2-D arrays into one roughly square mosaic."""
    n = len(arrays)
    if n == 0:
        return Mosaic(np.full((1, 1), np.nan, np.float32), 1, (1, 1), 0, gap)
    h, w = arrays[0].shape
    columns = columns or max(1, math.ceil(math.sqrt(n * h / max(w, 1))))
    rows = math.ceil(n / columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan, np.float32)
    for i, a in enumerate(arrays):
        r, c = divmod(i, columns)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = a
    return Mosaic(out, columns, (h, w), n, gap)
