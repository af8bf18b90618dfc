"""Qt-free document model: images, boxes, labels; sidecar load/save."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.formats import labelme
from app.images import list_images
from app.regions import Box  # noqa: F401  (re-exported: the model's box type)


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
            doc = labelme.read(self.sidecar, derived=True)  # polygons, circles, masks: regions by their bounding box
        except ValueError as exc:
            self.load_error = str(exc)
            return
        self.extra = doc.extra
        self.boxes = []
        for b in doc.boxes:
            self.add(b)
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
        self.opened: list[Path] = []
        self.root: Path | None = None

    def open(self, paths):
        files = list_images(paths)
        self.opened = [Path(p) for p in paths]
        folders = [p for p in self.opened if p.is_dir()]
        # The folder annotation files are relative to: the opened folder, or the images' folder.
        self.root = folders[0] if len(folders) == 1 else (files[0].parent if files else None)
        self.images = [ImageDoc(p) for p in files]
        self.current = 0 if self.images else -1
        return self.images

    def doc_for(self, path) -> ImageDoc | None:
        path = Path(path).resolve()
        for doc in self.images:
            if doc.path.resolve() == path:
                doc.load()
                return doc
        return None

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
