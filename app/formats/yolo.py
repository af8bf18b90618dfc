"""YOLO txt: one file per image, lines ``class cx cy w h`` relative to the image size, plus a
classes file (one label per line, line number = class index)."""
from __future__ import annotations

from pathlib import Path

from app.atomic import atomic_write_text
from app.formats.common import AnnotationError, finite_box, number_text

CLASSES_FILE = "classes.txt"


def read_classes(path) -> list[str]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read the YOLO classes file ({exc})") from exc
    return [line.strip() for line in lines if line.strip()]


def read(path, classes, size):
    """Boxes of one label file; ``size`` = (w, h) of its image."""
    path = Path(path)
    w, h = size
    boxes = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise AnnotationError(f"{path}: line {n}: expected 'class cx cy w h', got {line!r}")
        try:
            cls = int(parts[0])
            cx, cy, bw, bh = (float(v) for v in parts[1:])
        except ValueError as exc:
            raise AnnotationError(f"{path}: line {n}: not numbers: {line!r}") from exc
        if not 0 <= cls < len(classes):
            raise AnnotationError(f"{path}: line {n}: class {cls} is not in the classes file ({len(classes)} classes)")
        boxes.append(finite_box(path, f"line {n}", (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h, classes[cls]))
    return boxes


def to_text(boxes, classes, size) -> str:
    w, h = size
    lines = []
    for b in boxes:
        cx, cy = (b.x1 + b.x2) / 2 / w, (b.y1 + b.y2) / 2 / h
        lines.append(" ".join([str(classes.index(b.label))] + [number_text(v) for v in (cx, cy, b.width / w, b.height / h)]))
    return "\n".join(lines) + ("\n" if lines else "")


def write(path, boxes, classes, size) -> None:
    atomic_write_text(path, to_text(boxes, classes, size))


def write_classes(path, classes) -> None:
    atomic_write_text(path, "\n".join(classes) + "\n")
