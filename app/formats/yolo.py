"""YOLO txt, one file per image: ``class cx cy w h`` relative to the image as displayed (after
EXIF orientation, as Ultralytics does), plus segmentation lines (polygon -> its bounding box,
derived), pose lines (the box; keypoints kept for write-back) and a 6th confidence column
(prediction files). Class names come from ``classes.txt``, ``obj.names`` or ``data.yaml``
(see ``yolo_dataset``); a box remembers its source line and class id, so write-back keeps
class ids as in the source's class list and unchanged lines byte-for-byte."""
from __future__ import annotations

from pathlib import Path

from app.atomic import atomic_write_bytes
from app.formats.common import AnnotationError, FLOAT32_NOTE, encode_text, finite_box, number_text, unchanged

CLASSES_FILE = "classes.txt"


def read_classes(path) -> dict:
    """{class id: name} from a one-name-per-line file; line number = class id (blank lines in
    the middle keep their id)."""
    path = Path(path)
    try:
        lines = path.read_bytes().decode("utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read the YOLO classes file ({exc})") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    return {i: line.strip() for i, line in enumerate(lines) if line.strip()}


def _numbers(path, n, parts):
    try:
        cls_f = float(parts[0])
        values = [float(v) for v in parts[1:]]
    except ValueError as exc:
        raise AnnotationError(f"{path}: line {n}: not numbers: {' '.join(parts)!r}") from exc
    if not cls_f.is_integer() or cls_f < 0:
        raise AnnotationError(f"{path}: line {n}: class must be a non-negative integer, got {parts[0]!r}")
    return int(cls_f), values


def line_kind(count, kpt_shape=None) -> str | None:
    """What a line of ``count`` numbers (class included) is."""
    if count == 5:
        return "box"
    if count == 6:
        return "scored"
    if kpt_shape and count in (5 + kpt_shape[0] * kpt_shape[1], 6 + kpt_shape[0] * kpt_shape[1]):
        return "pose"
    if count >= 7 and (count - 1) % 2 == 0:
        return "segment"
    if count > 5 and (count - 5) % 3 == 0:
        return "pose"
    return None


def read(path, classes, size, kpt_shape=None, report=None):
    """Boxes of one label file; ``size`` = (w, h) of its image as displayed; ``classes``: {id:
    name}, or None to name classes by their id; ``report``: a FileReport to count derived
    regions and warnings in."""
    path = Path(path)
    w, h = size
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read ({exc})") from exc
    boxes = []
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        cls, values = _numbers(path, n, parts)
        kind = line_kind(len(parts), kpt_shape)
        if kind is None:
            raise AnnotationError(f"{path}: line {n}: expected 'class cx cy w h' (or a segmentation/pose line), got {len(parts)} numbers")
        if classes is not None and cls not in classes:
            raise AnnotationError(f"{path}: line {n}: class {cls} is not in the class list ({len(classes)} classes)")
        label = classes[cls] if classes is not None else str(cls)
        attrs = [("yolo_class", str(cls)), ("yolo_line", line.strip())]
        if kind == "segment":
            xs, ys = values[0::2], values[1::2]
            corners = (min(xs) * w, min(ys) * h, max(xs) * w, max(ys) * h)
            attrs.append(("derived_from", "segmentation"))
            if report is not None:
                report.derived += 1
        else:
            cx, cy, bw, bh = values[:4]
            corners = ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
            if kind == "scored":
                attrs.append(("score", parts[5]))
            elif kind == "pose":
                attrs.append(("keypoints", " ".join(parts[5:])))
        box = finite_box(path, f"line {n}", *corners, label=label, attrs=attrs)
        if box.problem() and report is not None:
            report.warnings.append(f"line {n} of {path.name}: {FLOAT32_NOTE}")
        boxes.append(box)
    return boxes


def class_ids(labels, classes=None) -> dict:
    """{name: id}: the source's ids kept, new labels appended after the largest id."""
    ids = {}
    for i, name in sorted((classes or {}).items()):
        ids.setdefault(name, i)
    nxt = max(list((classes or {}).keys()) + [-1]) + 1
    for label in labels:
        if label not in ids:
            ids[label] = nxt
            nxt += 1
    return ids


def _line(b, ids, size):
    cls = ids[b.label]
    if unchanged(b) and b.attr("yolo_line") and b.attr("yolo_class") == str(cls):
        return b.attr("yolo_line")
    w, h = size
    cx, cy = (b.x1 + b.x2) / 2 / w, (b.y1 + b.y2) / 2 / h
    fields = [str(cls)] + [number_text(v) for v in (cx, cy, b.width / w, b.height / h)]
    if b.attr("keypoints"):
        fields.append(b.attr("keypoints"))
    elif b.attr("score"):
        fields.append(b.attr("score"))
    return " ".join(fields)


def to_text(boxes, ids, size) -> str:
    """``ids``: {name: class id} (see ``class_ids``); a plain list of names is accepted too."""
    if isinstance(ids, (list, tuple)):
        ids = {name: i for i, name in enumerate(ids)}
    lines = [_line(b, ids, size) for b in boxes]
    return "\n".join(lines) + ("\n" if lines else "")


def write(path, boxes, ids, size) -> None:
    atomic_write_bytes(path, encode_text(to_text(boxes, ids, size)))


def classes_text(ids) -> str:
    """A classes.txt for {name: id}: line number = id, gaps as blank lines."""
    if isinstance(ids, (list, tuple)):
        return "\n".join(ids) + "\n"
    by_id = {i: name for name, i in ids.items()}
    return "\n".join(by_id.get(i, "") for i in range(max(by_id) + 1)) + "\n" if by_id else ""


def write_classes(path, ids) -> None:
    atomic_write_bytes(path, encode_text(classes_text(ids)))

