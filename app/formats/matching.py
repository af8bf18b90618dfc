"""Which image an annotation means. Annotation files name images in many ways: a path relative
to the dataset root (COCO ``file_name`` with subfolders), a name without extension, a Windows
path from another machine, or nothing at all (YOLO: the label file's own path, ``labels/``
beside ``images/``). Names with dots (``x_png.rf.<hash>.jpg``) are only ever split at the last
dot, so two images never merge."""
from __future__ import annotations

import os
from pathlib import Path

from app.images import is_image


def _abs(path) -> Path:
    """Absolute and normalized, without resolving symlinks (realpath costs a stat per part)."""
    return Path(os.path.abspath(path))


def _key(path: Path) -> str:
    return os.path.normcase(str(path))


def _stem_key(path: Path) -> str:
    return _key(path.with_suffix("")) if is_image(path) else _key(path)


class ImageIndex:
    def __init__(self, images, root=None):
        self.images = [Path(p) for p in images]
        self.root = _abs(root) if root else None
        self.by_abs, self.by_abs_stem, self.by_rel, self.by_rel_stem = {}, {}, {}, {}
        self.by_name, self.by_stem = {}, {}
        for image in self.images:
            full = _abs(image)
            self.by_abs[_key(full)] = image
            self.by_abs_stem.setdefault(_stem_key(full), []).append(image)
            if self.root is not None:
                try:
                    rel = full.relative_to(self.root)
                except ValueError:
                    rel = None
                if rel is not None:
                    self.by_rel[rel.as_posix()] = image
                    self.by_rel_stem.setdefault(rel.with_suffix("").as_posix(), []).append(image)
            self.by_name.setdefault(image.name, []).append(image)
            self.by_stem.setdefault(image.stem, []).append(image)

    @staticmethod
    def _one(found):
        return found[0] if found and len(found) == 1 else None

    def find(self, name, base=None):
        """The image an annotation names (``base``: the folder of the annotation file, for
        relative names), or None when there is none or more than one."""
        if name is None:
            return None
        text = str(name).replace("\\", "/").strip()
        while text.startswith("./"):
            text = text[2:]
        if not text:
            return None
        has_suffix = is_image(Path(text))
        if base is not None and not text.startswith("/") and ":" not in text[:3]:
            full = _abs(Path(base) / text)
            hit = self.by_abs.get(_key(full)) if has_suffix else self._one(self.by_abs_stem.get(_key(full)))
            if hit is not None:
                return hit
        parts = [p for p in text.split("/") if p]
        for start in range(len(parts)):  # longest tail first: "C:/x/images/a.jpg" -> "images/a.jpg"
            tail = "/".join(parts[start:])
            hit = self.by_rel.get(tail) if has_suffix else self._one(self.by_rel_stem.get(tail))
            if hit is not None:
                return hit
        last = parts[-1]
        return self._one(self.by_name.get(last)) if has_suffix else self._one(self.by_stem.get(last))

    def for_file(self, ann_file, ann_root=None, named=None):
        """The image of a per-image annotation file (YOLO txt, VOC xml, labelme json): same path
        with ``labels`` -> ``images`` (Ultralytics), same folder, same place relative to the
        annotation root, then the name written inside the file, then a unique stem."""
        ann_file = Path(ann_file)
        full = _abs(ann_file).with_suffix("")
        candidates = [full]
        parts = list(full.parts)
        for i in range(len(parts) - 1, -1, -1):
            if parts[i] in ("labels", "Annotations", "annotations", "labelTxt"):
                for repl in ("images", "JPEGImages", "Images"):
                    candidates.append(Path(*parts[:i], repl, *parts[i + 1:]))
                break
        for c in candidates:
            hit = self._one(self.by_abs_stem.get(_key(c)))
            if hit is not None:
                return hit
        if ann_root is not None:
            try:
                rel = _abs(ann_file).relative_to(_abs(ann_root)).with_suffix("").as_posix()
            except ValueError:
                rel = None
            if rel is not None:
                hit = self._one(self.by_rel_stem.get(rel))
                if hit is not None:
                    return hit
        hit = self.find(named, base=ann_file.parent) if named else None
        return hit if hit is not None else self._one(self.by_stem.get(ann_file.stem))
