"""CSV with a header ``image,label,x1,y1,x2,y2`` (image paths relative to the images root)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from app.atomic import atomic_write_text
from app.formats.common import AnnotationError, finite_box, number_text

HEADER = ["image", "label", "x1", "y1", "x2", "y2"]


def read(path):
    """-> {image name: [boxes]} in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read ({exc})") from exc
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] != HEADER:
        raise AnnotationError(f"{path}: line 1: header must be {','.join(HEADER)}, got {header!r}")
    out = {}
    for n, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != 6:
            raise AnnotationError(f"{path}: line {n}: expected 6 fields, got {len(row)}")
        out.setdefault(row[0], []).append(finite_box(path, f"line {n}", *row[2:], label=row[1]))
    return out


def to_text(entries) -> str:
    """``entries``: list of (image name, boxes)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    for name, boxes in entries:
        for b in boxes:
            writer.writerow([name, b.label, *(number_text(v) for v in b.corners())])
    return buf.getvalue()


def write(path, entries) -> None:
    atomic_write_text(path, to_text(entries))
