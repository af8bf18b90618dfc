"""CSV box tables as people and tools write them: common headers (``filename``/``image``/
``path``/``image_name``, ``class``/``label``/``class_name``/``label_name``, ``xmin``/``x1``...),
the TF Object Detection API layout (``filename,width,height,class,xmin,ymin,xmax,ymax``),
keras-retinanet's headerless ``path,x1,y1,x2,y2,class_name`` with its empty-box rows
(``path,,,,,``: an image without boxes), any delimiter the sniffer recognises. Each box keeps
its row and the file its layout, so write-back uses the layout it was read in."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from app.atomic import atomic_write_bytes
from app.formats.common import AnnotationError, FLOAT32_NOTE, encode_text, finite_box, number_text, unchanged

HEADER = ["image", "label", "x1", "y1", "x2", "y2"]
ALIASES = {
    "image": ("image", "filename", "file_name", "image_name", "image_path", "path", "img", "file", "image_file", "imagename"),
    "label": ("label", "class", "class_name", "label_name", "category", "category_name", "classname", "labelname"),
    "x1": ("x1", "xmin", "x_min", "left", "xmin_px"),
    "y1": ("y1", "ymin", "y_min", "top", "ymin_px"),
    "x2": ("x2", "xmax", "x_max", "right", "xmax_px"),
    "y2": ("y2", "ymax", "y_max", "bottom", "ymax_px"),
    "bw": ("w", "box_width", "bbox_width", "bw"),
    "bh": ("h", "box_height", "bbox_height", "bh"),
    "width": ("width", "image_width", "img_width"),
    "height": ("height", "image_height", "img_height"),
}
RETINANET = {"image": 0, "x1": 1, "y1": 2, "x2": 3, "y2": 4, "label": 5}


@dataclass
class CsvDoc:
    layout: dict = field(default_factory=dict)  # delimiter, header (list or None), cols {role: index}
    boxes: dict = field(default_factory=dict)  # image name as written -> [Box] (empty: an image without boxes)
    sizes: dict = field(default_factory=dict)  # image name -> (w, h) where the table gave one
    warnings: list = field(default_factory=list)


def _text(path, doc):
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        doc.warnings.append(f"not UTF-8 ({exc.reason} at byte {exc.start}); undecodable bytes kept as they are")
        return raw.decode("utf-8", "surrogateescape")


def _columns(header):
    names = [h.strip().lower().replace(" ", "_") for h in header]
    cols = {}
    for role, aliases in ALIASES.items():
        for alias in aliases:
            if alias in names:
                cols[role] = names.index(alias)
                break
    if "image" not in cols and "image_id" in names:
        cols["image"] = names.index("image_id")
    if "x2" not in cols and "bw" not in cols and "width" in cols and "x1" in cols:
        cols["bw"], cols["bh"] = cols.pop("width"), cols.pop("height", None)  # x,y,width,height of the box
    return cols


def _layout(path, rows, delimiter):
    first = rows[0] if rows else []
    cols = _columns(first)
    if "image" in cols:
        if "label" not in cols or "x1" not in cols or "y1" not in cols or not ({"x2", "y2"} <= set(cols) or {"bw", "bh"} <= set(cols)):
            raise AnnotationError(f"{path}: line 1: header must name the image, label and box columns "
                                  f"(e.g. {','.join(HEADER)}), got {first!r}")
        return {"delimiter": delimiter, "header": first, "cols": cols}
    if len(first) == 6:  # keras-retinanet: path,x1,y1,x2,y2,class_name
        return {"delimiter": delimiter, "header": None, "cols": dict(RETINANET)}
    raise AnnotationError(f"{path}: line 1: header must be like {','.join(HEADER)} "
                          f"(or headerless path,x1,y1,x2,y2,class_name), got {first!r}")


def read_document(path) -> CsvDoc:
    path = Path(path)
    doc = CsvDoc()
    try:
        text = _text(path, doc)
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read ({exc})") from exc
    try:
        delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as exc:
        raise AnnotationError(f"{path}: not a readable CSV ({exc})") from exc
    doc.layout = _layout(path, rows, delimiter)
    start = 1 if doc.layout["header"] is not None else 0
    for n, row in enumerate(rows[start:], start=start + 1):
        if row and any(v.strip() for v in row):
            _row(path, n, row, doc)
    return doc


def _row(path, n, row, doc):
    cols, width = doc.layout["cols"], len(doc.layout["header"] or row)
    if len(row) != width or len(row) <= max(c for c in cols.values() if c is not None):
        raise AnnotationError(f"{path}: line {n}: expected {width} fields, got {len(row)}")
    name = row[cols["image"]].strip()
    get = {role: row[i].strip() for role, i in cols.items() if i is not None}
    coords = [get.get(k, "") for k in ("x1", "y1", "x2", "y2")] if "x2" in cols else [get.get(k, "") for k in ("x1", "y1", "bw", "bh")]
    boxes = doc.boxes.setdefault(name, [])
    if "width" in get and "height" in get and get["width"] and get["height"]:
        try:
            doc.sizes[name] = (int(float(get["width"])), int(float(get["height"])))
        except ValueError as exc:
            raise AnnotationError(f"{path}: line {n}: image width/height must be numbers, got {get['width']!r}, {get['height']!r}") from exc
    if not any(coords) and not get.get("label"):
        return  # an image listed without boxes (keras-retinanet's "path,,,,,")
    if "x2" not in cols:
        try:
            coords = [coords[0], coords[1], float(coords[0]) + float(coords[2]), float(coords[1]) + float(coords[3])]
        except ValueError as exc:
            raise AnnotationError(f"{path}: line {n}: coordinates must be numbers, got {coords!r}") from exc
    attrs = (("csv_row", json.dumps(row)), ("csv_layout", json.dumps(doc.layout)))
    box = finite_box(path, f"line {n}", *coords, label=get.get("label", ""), attrs=attrs)
    if box.problem():
        doc.warnings.append(f"line {n} of {path.name}: {FLOAT32_NOTE}")
    boxes.append(box)


def read(path):
    """-> {image name: [boxes]} in file order."""
    return {k: v for k, v in read_document(path).boxes.items() if v}


def _fields(b, name, size, layout):
    cols = layout["cols"]
    row = json.loads(b.attr("csv_row")) if b.attr("csv_row") and json.loads(b.attr("csv_layout") or "null") == layout else None
    width = len(layout["header"]) if layout["header"] else 6
    if row is None:
        row = [""] * width
        row[cols["image"]] = name
    row[cols["label"]] = b.label
    if not (unchanged(b) and b.attr("csv_row")):
        values = b.corners() if "x2" in cols else (b.x1, b.y1, b.width, b.height)
        for role, v in zip(("x1", "y1", "x2", "y2") if "x2" in cols else ("x1", "y1", "bw", "bh"), values):
            row[cols[role]] = number_text(v)
    if size is not None and cols.get("width") is not None and cols.get("height") is not None:
        row[cols["width"]], row[cols["height"]] = str(int(size[0])), str(int(size[1]))
    return row


def to_text(entries, layout=None) -> str:
    """``entries``: list of (image name, boxes[, (w, h) or None]); ``layout``: the one a file was
    read in (``CsvDoc.layout``), default ``image,label,x1,y1,x2,y2``."""
    layout = layout or {"delimiter": ",", "header": HEADER, "cols": {r: i for i, r in enumerate(HEADER)}}
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=layout["delimiter"], lineterminator="\n")
    if layout["header"]:
        writer.writerow(layout["header"])
    for entry in entries:
        name, boxes, size = (tuple(entry) + (None,))[:3]
        if not boxes and layout["header"] is None:
            writer.writerow([name, "", "", "", "", ""])  # keras-retinanet: an image without boxes
        for b in boxes:
            writer.writerow(_fields(b, name, size, layout))
    return buf.getvalue()


def write(path, entries, layout=None) -> None:
    atomic_write_bytes(path, encode_text(to_text(entries, layout)))
