"""The one table of annotation formats: name -> module, how to recognise one of its files, how
to read a file into an ImportResult, and whether it is written per image or as one table."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from app.formats import coco, csvfmt, labelme, reading, voc, yolo
from app.formats.common import AnnotationError
from app.formats.yolo_dataset import CLASS_LISTS
from app.images import IMAGE_SUFFIXES


@dataclass(frozen=True)
class Format:
    name: str
    module: ModuleType
    suffix: str  # of its files
    detect: Callable  # (path, ctx) -> bool: this file is of this format
    read: Callable  # (path, ctx, report): add the file's boxes to ctx.result
    per_image: bool  # one file per image (written into a folder) or one table (a file)


def _json_kind(path, ctx):
    try:
        data = ctx.json(path)
    except AnnotationError:
        return "broken"
    if coco.sniff(data):
        return "coco"
    return "labelme" if isinstance(data, dict) and "shapes" in data else None


def _is_labels(path, ctx) -> bool:
    """A YOLO label file: in a labels/ folder or beside its image (its reader names any problem
    in it), or every line numbers."""
    path = Path(path)
    if path.name in CLASS_LISTS or path.name.lower().startswith("readme"):
        return False
    if "labels" in path.parts or any(path.with_name(path.stem + s).exists() for s in IMAGE_SUFFIXES):
        return True
    try:
        text = path.read_bytes()[:65536].decode("utf-8", "replace")
    except OSError:
        return False
    lines = [line.split() for line in text.splitlines() if line.strip()]
    for parts in lines[:200]:
        try:
            [float(v) for v in parts]
        except ValueError:
            return False
        if len(parts) < 2:
            return False
    return bool(lines)


def _is_table(path, ctx) -> bool:
    try:
        head = Path(path).read_bytes()[:4096].decode("utf-8", "replace").splitlines()
    except OSError:
        return False
    if not head:
        return False
    try:
        delimiter = csv.Sniffer().sniff("\n".join(head), delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    first = next(csv.reader([head[0]], delimiter=delimiter), [])
    return "image" in csvfmt._columns(first) or len(first) == 6


FORMATS_TABLE = {
    "labelme": Format("labelme", labelme, ".json", lambda p, c: _json_kind(p, c) == "labelme", reading.read_labelme, True),
    "voc": Format("voc", voc, ".xml", lambda p, c: voc.detect(p), reading.read_voc, True),
    "yolo": Format("yolo", yolo, ".txt", _is_labels, reading.read_yolo, True),
    "coco": Format("coco", coco, ".json", lambda p, c: _json_kind(p, c) == "coco", reading.read_coco, False),
    "csv": Format("csv", csvfmt, ".csv", _is_table, reading.read_csv, False),
}
FORMATS = tuple(FORMATS_TABLE)


def formats_for_suffix(suffix):
    return [f for f in FORMATS_TABLE.values() if f.suffix == suffix.lower()]
