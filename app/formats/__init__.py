"""Qt-free annotation readers and writers: labelme, Pascal VOC, YOLO, COCO, CSV.

``read_annotations`` maps a file or folder of annotations onto the images in play and never
half-imports a file: a malformed file contributes nothing and is reported by name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from app.formats import coco, csvfmt, labelme, voc, yolo
from app.formats.common import AnnotationError, relative_stem
from app.images import ImageReadError, image_size

FORMATS = ("labelme", "voc", "yolo", "coco", "csv")
__all__ = ["FORMATS", "AnnotationError", "ImportResult", "detect_format", "read_annotations", "write_annotations"]


@dataclass
class ImportResult:
    boxes: dict = field(default_factory=dict)  # image Path -> [Box]
    errors: list = field(default_factory=list)  # one message per file that contributed nothing
    sizes: dict = field(default_factory=dict)  # image Path -> (w, h) where the file gave one


def detect_format(path) -> str:
    path = Path(path)
    if path.is_dir():
        suffixes = {p.suffix.lower() for p in path.rglob("*") if p.is_file()}
        for suffix, fmt in ((".xml", "voc"), (".txt", "yolo"), (".json", "labelme"), (".csv", "csv")):
            if suffix in suffixes:
                return fmt
        raise AnnotationError(f"{path}: no annotation files (.json, .xml, .txt, .csv) in this folder")
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return "voc"
    if suffix == ".csv":
        return "csv"
    if suffix == ".txt":
        return "yolo"
    if suffix == ".json":
        try:
            head = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "labelme"  # let the reader name the problem
        return "coco" if isinstance(head, dict) and "images" in head and "annotations" in head else "labelme"
    raise AnnotationError(f"{path}: unknown annotation format (expected .json, .xml, .txt or .csv)")


class _Matcher:
    """Finds the image an annotation names: path relative to the images root, else a unique
    file name."""

    def __init__(self, images, root):
        self.root = Path(root) if root else None
        self.by_rel, by_name = {}, {}
        for p in images:
            p = Path(p)
            if self.root is not None:
                try:
                    self.by_rel[p.resolve().relative_to(self.root.resolve()).as_posix()] = p
                except ValueError:
                    pass
            by_name.setdefault(p.name, []).append(p)
        self.by_name = {k: v[0] for k, v in by_name.items() if len(v) == 1}

    def find(self, name):
        name = str(name).replace("\\", "/")
        return self.by_rel.get(name) or self.by_rel.get(name.lstrip("./")) or self.by_name.get(Path(name).name)


def read_annotations(path, images, images_root=None, fmt=None) -> ImportResult:
    """Boxes for ``images`` from the annotation file or folder ``path``."""
    path = Path(path)
    result = ImportResult()
    try:
        fmt = fmt or detect_format(path)
    except AnnotationError as exc:
        result.errors.append(str(exc))
        return result
    match = _Matcher(images, images_root)

    def add(image, boxes, size=None):
        result.boxes.setdefault(Path(image), []).extend(boxes)
        if size is not None:
            result.sizes[Path(image)] = tuple(size)

    if fmt in ("coco", "csv"):
        try:
            entries = coco.read(path) if fmt == "coco" else {k: (None, v) for k, v in csvfmt.read(path).items()}
        except AnnotationError as exc:
            result.errors.append(str(exc))
            return result
        missing = [name for name in entries if match.find(name) is None]
        for name, (size, boxes) in entries.items():
            if match.find(name) is not None:
                add(match.find(name), boxes, size)
        if missing:
            result.errors.append(f"{path}: {len(missing)} image(s) named here are not among the images: "
                                 + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
        return result

    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    suffix = {"labelme": ".json", "voc": ".xml", "yolo": ".txt"}[fmt]
    classes = None
    if fmt == "yolo":
        classes_file = (path if path.is_dir() else path.parent) / yolo.CLASSES_FILE
        try:
            classes = yolo.read_classes(classes_file)
        except AnnotationError as exc:
            result.errors.append(str(exc))
            return result
    for f in files:
        if f.suffix.lower() != suffix or f.name == yolo.CLASSES_FILE:
            continue
        rel = f.relative_to(path).with_suffix("") if path.is_dir() else Path(f.stem)
        try:
            if fmt == "labelme":
                doc = labelme.read(f)
                image = _find_by_stem(match, rel, doc.image_path, f)
                boxes, size = doc.boxes, None
            elif fmt == "voc":
                filename, size, boxes = voc.read(f)
                image = _find_by_stem(match, rel, filename, f)
            else:
                image = _find_by_stem(match, rel, None, f)
                if image is None:
                    raise AnnotationError(f"{f}: no image for this label file")
                size = image_size(image)
                boxes = yolo.read(f, classes, size)
        except (AnnotationError, ImageReadError) as exc:
            result.errors.append(str(exc))
            continue
        if image is None:
            result.errors.append(f"{f}: the image it annotates is not among the images")
            continue
        add(image, boxes, size)
    return result


def _find_by_stem(match, rel_stem, named, source):
    """The image for a per-image annotation file: same relative path (any image suffix), else
    the image name written inside the file."""
    for rel, image in match.by_rel.items():
        if Path(rel).with_suffix("") == rel_stem:
            return image
    if named:
        found = match.find(named)
        if found is not None:
            return found
    for name, image in match.by_name.items():
        if Path(name).stem == Path(source).stem:
            return image
    return None


def write_annotations(fmt, target, entries, images_root=None, overwrite=False) -> list[Path]:
    """Write ``entries`` = [(image path, boxes, (w, h) or None)] in ``fmt`` to ``target`` (a
    folder for per-image formats, a file for COCO and CSV). Refuses to replace existing files
    unless ``overwrite``: a lossier format must not silently clobber a user's file."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    target = Path(target)
    plan = []  # (path, writer)
    if fmt in ("coco", "csv"):
        names = [relative_stem(img, images_root).with_suffix(Path(img).suffix).as_posix() for img, _, _ in entries]
        if fmt == "coco":
            sized = [(n, size or image_size(img), boxes) for n, (img, boxes, size) in zip(names, entries)]
            plan.append((target, lambda p: coco.write(p, sized)))
        else:
            plan.append((target, lambda p: csvfmt.write(p, [(n, boxes) for n, (_, boxes, _) in zip(names, entries)])))
    else:
        labels = sorted({b.label for _, boxes, _ in entries for b in boxes})
        if fmt == "yolo":
            plan.append((target / yolo.CLASSES_FILE, lambda p: yolo.write_classes(p, labels)))
        for img, boxes, size in entries:
            stem = relative_stem(img, images_root)
            out = target / stem.with_suffix({"labelme": ".json", "voc": ".xml", "yolo": ".txt"}[fmt])
            if fmt == "labelme":
                plan.append((out, lambda p, img=img, boxes=boxes, size=size: labelme.write(p, img, boxes, None, size)))
            elif fmt == "voc":
                plan.append((out, lambda p, img=img, boxes=boxes, size=size: voc.write(p, img, boxes, size or image_size(img))))
            else:
                plan.append((out, lambda p, img=img, boxes=boxes, size=size: yolo.write(p, boxes, labels, size or image_size(img))))
    existing = [p for p, _ in plan if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"would replace {len(existing)} existing file(s), e.g. {existing[0]}")
    for p, write in plan:
        p.parent.mkdir(parents=True, exist_ok=True)
        write(p)
    return [p for p, _ in plan]
