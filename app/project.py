"""Qt-free document model: images, boxes, labels; sidecar load/save."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.formats import labelme
from app.images import list_images


@dataclass(frozen=True)
class Box:
    """A region in image pixels, corners ordered (x1 <= x2, y1 <= y2)."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str = "object"
    id: int = 0

    @classmethod
    def from_corners(cls, xa, ya, xb, yb, label="object", id=0):
        values = [float(v) for v in (xa, ya, xb, yb)]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"box coordinates must be finite, got {values}")
        xa, ya, xb, yb = values
        return cls(min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb), str(label), int(id))

    @property
    def width(self):
        return self.x2 - self.x1

    @property
    def height(self):
        return self.y2 - self.y1

    def corners(self):
        return (self.x1, self.y1, self.x2, self.y2)

    def moved_to(self, x1, y1, x2, y2):
        return Box.from_corners(x1, y1, x2, y2, self.label, self.id)

    def relabeled(self, label):
        return replace(self, label=str(label))

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


@dataclass
class ImageDoc:
    path: Path
    boxes: list[Box] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # sidecar content we keep but do not edit
    loaded: bool = False
    dirty: bool = False
    load_error: str | None = None
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1), repr=False)

    def next_id(self) -> int:
        used = {b.id for b in self.boxes}
        while True:
            candidate = next(self._ids)
            if candidate not in used:
                return candidate

    def box_by_id(self, box_id):
        for b in self.boxes:
            if b.id == box_id:
                return b
        return None

    # Edits (the GUI wraps each in an undo command).
    def add(self, box: Box, index=None) -> Box:
        if box.id == 0 or self.box_by_id(box.id) is not None:
            box = replace(box, id=self.next_id())
        self.boxes.insert(len(self.boxes) if index is None else index, box)
        self.dirty = True
        return box

    def remove(self, box_id) -> tuple[int, Box]:
        for i, b in enumerate(self.boxes):
            if b.id == box_id:
                del self.boxes[i]
                self.dirty = True
                return i, b
        raise KeyError(box_id)

    def replace_box(self, box: Box):
        for i, b in enumerate(self.boxes):
            if b.id == box.id:
                self.boxes[i] = box
                self.dirty = True
                return
        raise KeyError(box.id)

    @property
    def sidecar(self) -> Path:
        return labelme.sidecar_path(self.path)

    def load(self):
        """Read the labelme sidecar if there is one; a broken sidecar leaves no boxes and an error."""
        if self.loaded:
            return
        self.loaded = True
        if not self.sidecar.exists():
            return
        try:
            doc = labelme.read(self.sidecar)
        except ValueError as exc:
            self.load_error = str(exc)
            return
        self.extra = doc.extra
        self.boxes = []
        for b in doc.boxes:
            self.add(Box.from_corners(*b.corners(), label=b.label))
        self.dirty = False

    def save(self, image_size=None):
        """Write the sidecar atomically; a broken sidecar is never overwritten silently."""
        if self.load_error:
            raise ValueError(f"not saving over the unreadable sidecar {self.sidecar}: {self.load_error}")
        labelme.write(self.sidecar, self.path, self.boxes, self.extra, image_size)
        self.dirty = False


class Project:
    def __init__(self):
        self.images: list[ImageDoc] = []
        self.current = -1

    def open(self, paths):
        files = list_images(paths)
        self.images = [ImageDoc(p) for p in files]
        self.current = 0 if self.images else -1
        return self.images

    def doc(self, index=None) -> ImageDoc | None:
        index = self.current if index is None else index
        if 0 <= index < len(self.images):
            doc = self.images[index]
            doc.load()
            return doc
        return None

    def step(self, delta):
        if self.images:
            self.current = max(0, min(len(self.images) - 1, self.current + delta))
        return self.doc()
