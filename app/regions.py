"""The box type shared by the model, the formats and the exporter (Qt-free)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace


FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Box:
    """A region in image pixels, corners ordered (x1 <= x2, y1 <= y2)."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str = "object"
    id: int = 0
    attrs: tuple = ()  # (key, value) pairs a format carries per box (VOC difficult, labelme flags)

    @classmethod
    def from_corners(cls, xa, ya, xb, yb, label="object", id=0, attrs=()):
        values = [float(v) for v in (xa, ya, xb, yb)]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"box coordinates must be finite, got {values}")
        xa, ya, xb, yb = values
        return cls(min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb), str(label), int(id), tuple(attrs))

    def attr(self, key, default=None):
        return dict(self.attrs).get(key, default)

    @property
    def width(self):
        return self.x2 - self.x1

    @property
    def height(self):
        return self.y2 - self.y1

    def corners(self):
        return (self.x1, self.y1, self.x2, self.y2)

    def moved_to(self, x1, y1, x2, y2):
        return Box.from_corners(x1, y1, x2, y2, self.label, self.id, self.attrs)

    def relabeled(self, label):
        return replace(self, label=str(label))

    def problem(self) -> str | None:
        """Why this box cannot be pooled, or None. Coordinates that are finite in Python but
        overflow float32 (1e300 in a hand-edited file) are kept, so that writing back loses
        nothing, but every consumer skips them and names the box instead of failing the image."""
        if any(abs(v) > FLOAT32_MAX for v in self.corners()):
            return f"coordinates {list(self.corners())} are beyond the float32 range"
        return None

    def flags(self, width, height):
        """Conditions worth flagging in a manifest: zero area, partly or fully outside."""
        out = []
        if self.width <= 0 or self.height <= 0:
            out.append("zero-area")
        if self.x2 <= 0 or self.y2 <= 0 or self.x1 >= width or self.y1 >= height:
            out.append("outside-image")
        elif self.x1 < 0 or self.y1 < 0 or self.x2 > width or self.y2 > height:
            out.append("partly-outside")
        return out


