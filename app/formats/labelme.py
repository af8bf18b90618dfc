"""labelme JSON sidecars, every era: 5.x rectangles (2 points), X-AnyLabeling's 4-corner
rectangles, 3.x shapes without ``shape_type`` (4-point polygons were boxes), embedded
``imageData``. Polygons, circles, masks and rotated boxes become regions by their bounding box,
marked as derived; points and lines are not regions and are reported as skipped.

Write-back keeps every shape in its place, unknown keys, legacy colours and the image size:
each box remembers the index and a fingerprint of the shape it came from (``Box.attrs``), so an
unchanged box writes its shape back byte-for-byte and a deleted one removes only its shape."""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.atomic import atomic_write_text
from app.formats.common import (AnnotationError, bounds, finite_box, json_text, unchanged,
                                FLOAT32_NOTE)

LABELME_VERSION = "5.4.1"
SHAPE_KEYS = ("group_id", "description", "flags")
DERIVED = ("polygon", "circle", "mask", "rotation")
NOT_REGIONS = ("point", "points", "line", "linestrip", "cuboid")


@dataclass
class LabelmeDoc:
    boxes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # other top-level keys + "_shapes" (all shapes, for write-back)
    image_path: str | None = None
    derived: int = 0
    skipped: list = field(default_factory=list)  # "shapes[3] (point 'nose'): not a region"
    warnings: list = field(default_factory=list)
    image_size: tuple | None = None  # (w, h) from imageWidth/imageHeight, else from imageData
    has_image_data: bool = False


def sidecar_path(image_path) -> Path:
    image_path = Path(image_path)
    return image_path.with_name(image_path.stem + ".json")


def load_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    except RecursionError as exc:
        raise AnnotationError(f"{path}: JSON nested too deeply") from exc


def fingerprint(shape) -> str:
    return hashlib.sha1(json.dumps(shape, sort_keys=True, default=str).encode("utf-8", "surrogatepass")).hexdigest()[:12]


def kind(shape) -> str:
    """'box', 'derived' or 'skip' for one shape dict."""
    st = shape.get("shape_type")
    if st == "rectangle":
        return "box"
    if st is None:  # labelme 3.x and older: every shape is a polygon; a 4-point axis-aligned one is a box
        return "box" if _axis_aligned_quad(shape.get("points")) else "derived"
    return "derived" if st in DERIVED else "skip"


def _axis_aligned_quad(pts) -> bool:
    try:
        if len(pts) != 4:
            return False
        xs, ys = {float(p[0]) for p in pts}, {float(p[1]) for p in pts}
    except (TypeError, ValueError, IndexError, KeyError):
        return False
    return len(xs) <= 2 and len(ys) <= 2


def _region(path, i, shape, k):
    """(x1, y1, x2, y2) of a box or derived shape."""
    pts, st = shape.get("points"), shape.get("shape_type")
    where = f"shapes[{i}].points"
    if st == "rectangle":
        if not (isinstance(pts, list) and len(pts) in (2, 4) and all(isinstance(p, list) and len(p) == 2 for p in pts)):
            raise AnnotationError(f"{path}: {where} must be two [x, y] points (or four corners), got {pts!r}")
    if not isinstance(pts, list) or not pts:
        raise AnnotationError(f"{path}: {where} must be a list of [x, y] points, got {pts!r}")
    if st == "circle":
        if len(pts) != 2:
            raise AnnotationError(f"{path}: {where}: a circle needs its centre and one point on it")
        (cx, cy), (px, py) = bounds(path, where, pts[:1])[:2], bounds(path, where, pts[1:])[:2]
        r = ((cx - px) ** 2 + (cy - py) ** 2) ** 0.5
        return cx - r, cy - r, cx + r, cy + r
    return bounds(path, where, pts)


def read(path, derived=False) -> LabelmeDoc:
    """``derived``: also make regions of polygons, circles, masks and rotated boxes (imports do;
    the GUI's own sidecars keep them as shapes it does not edit)."""
    path = Path(path)
    data = load_json(path)
    try:
        return _read(path, data, derived)
    except AnnotationError:
        raise
    except Exception as exc:  # any malformed value names the file, never a traceback
        raise AnnotationError(f"{path}: malformed labelme file ({type(exc).__name__}: {exc})") from exc


def _read(path, data, derived) -> LabelmeDoc:
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a JSON object at the top level")
    shapes = data.get("shapes", [])
    if not isinstance(shapes, list):
        raise AnnotationError(f"{path}: key 'shapes' must be a list")
    doc = LabelmeDoc()
    regions = []  # indices of the shapes that became boxes: write-back drops those the user deleted
    for i, shape in enumerate(shapes):
        if not isinstance(shape, dict):
            raise AnnotationError(f"{path}: shapes[{i}] must be an object")
        k = kind(shape)
        what = f"shapes[{i}] ({shape.get('shape_type') or 'polygon'} {str(shape.get('label', ''))!r})"
        if k == "derived" and not derived:
            continue
        if k == "skip":
            st = shape.get("shape_type")
            doc.skipped.append(f"{what}: not a region" if st in NOT_REGIONS else f"{what}: unknown shape_type {st!r}")
            continue
        attrs = [(key, json.dumps(shape[key])) for key in SHAPE_KEYS if key in shape]
        if shape.get("score") is not None:
            attrs.append(("score", str(shape["score"])))
        if "difficult" in shape:
            attrs.append(("difficult", "1" if shape["difficult"] else "0"))
        if k == "derived":
            attrs.append(("derived_from", shape.get("shape_type") or "polygon"))
        try:
            corners = _region(path, i, shape, k)
            box = finite_box(path, f"shapes[{i}].points", *corners, label=str(shape.get("label", "")), attrs=attrs)
        except AnnotationError as exc:
            if k == "box":  # a malformed rectangle refuses the file: nothing is half-imported
                raise
            doc.skipped.append(f"{what}: {str(exc).split(': ', 1)[-1]}")  # kept as it was on write-back
            continue
        doc.derived += k == "derived"
        box = _stamp(box, i, shape)
        if box.problem():
            doc.warnings.append(f"shapes[{i}] of {path.name}: {FLOAT32_NOTE}")
        doc.boxes.append(box)
        regions.append(i)
    doc.extra = {k: v for k, v in data.items() if k != "shapes"}
    doc.extra["_shapes"] = shapes
    doc.extra["_regions"] = regions
    doc.extra["_key_order"] = list(data)
    image_path = data.get("imagePath")
    doc.image_path = image_path if isinstance(image_path, str) else None
    doc.has_image_data = isinstance(data.get("imageData"), str) and bool(data.get("imageData"))
    w, h = data.get("imageWidth"), data.get("imageHeight")
    if isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0:
        doc.image_size = (int(w), int(h))
    elif doc.has_image_data:
        doc.image_size = embedded_size(data["imageData"])
    return doc


def _stamp(box, index, shape):
    attrs = dict(box.attrs)
    attrs.update(labelme_index=str(index), labelme_shape=fingerprint(shape))
    return type(box)(box.x1, box.y1, box.x2, box.y2, box.label, box.id, tuple(attrs.items()))


def embedded_image(path) -> bytes | None:
    """The image bytes a labelme file carries in ``imageData`` (None when it carries none)."""
    data = load_json(path)
    raw = data.get("imageData") if isinstance(data, dict) else None
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return base64.b64decode(raw, validate=False)
    except ValueError as exc:
        raise AnnotationError(f"{path}: imageData is not base64 ({exc})") from exc


def embedded_size(b64: str):
    import cv2

    try:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)
    except (ValueError, cv2.error):
        return None
    return None if img is None else (int(img.shape[1]), int(img.shape[0]))


def _new_shape(b):
    shape = {"label": b.label, "points": [[b.x1, b.y1], [b.x2, b.y2]], "group_id": None, "description": "",
             "shape_type": "rectangle", "flags": {}}
    shape.update({k: json.loads(v) for k, v in b.attrs if k in SHAPE_KEYS})
    return shape


def _updated(shape, b, k):
    """The shape a box came from, with the user's changes: label and shape keys always, the
    geometry only when the box moved (a moved polygon becomes the rectangle the user drew)."""
    out = dict(shape)
    out["label"] = b.label
    out.update({key: json.loads(v) for key, v in b.attrs if key in SHAPE_KEYS})
    if unchanged(b):
        return out
    x1, y1, x2, y2 = b.corners()
    if k == "box" and len(shape.get("points") or []) == 4:
        out["points"] = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]
    else:
        out["points"] = [[x1, y1], [x2, y2]]
        if k == "derived":
            out["shape_type"] = "rectangle"
            if "mask" in out:
                out["mask"] = None
    return out


def _shapes(boxes, originals, regions):
    claimed, new = {}, []
    for b in boxes:
        try:
            idx = int(b.attr("labelme_index"))
        except (TypeError, ValueError):
            idx = -1
        ok = 0 <= idx < len(originals) and idx not in claimed and isinstance(originals[idx], dict) \
            and b.attr("labelme_shape") == fingerprint(originals[idx])
        if ok:
            claimed[idx] = b
        else:
            new.append(b)
    out, insert_at = [], None
    for i, shape in enumerate(originals):
        k = kind(shape) if isinstance(shape, dict) else "skip"
        if i not in claimed and i not in regions:
            out.append(shape)
        elif i in claimed:
            out.append(_updated(shape, claimed[i], k))
            insert_at = len(out)
        # a region shape without its box was deleted by the user
    new_shapes = [_new_shape(b) for b in new]
    at = len(out) if insert_at is None else insert_at
    return out[:at] + new_shapes + out[at:]


def to_json(image_path, boxes, extra=None, image_size=None, image_ref=None) -> str:
    """``image_ref``: the imagePath to write for a new file (default: the image's name, for a
    sidecar beside it); a file read before keeps its imagePath while it names the same image."""
    extra = dict(extra or {})
    originals = extra.pop("_shapes", None)
    others = extra.pop("_other_shapes", [])
    order = extra.pop("_key_order", None)
    regions = set(extra.pop("_regions", range(len(originals or []))))
    data = {"version": LABELME_VERSION, "flags": {}} if originals is None else {}  # a file read before keeps its keys
    data.update(extra)
    if originals is None:
        data["shapes"] = [_new_shape(b) for b in boxes] + list(others)
        data.setdefault("imageData", None)
    else:
        data["shapes"] = _shapes(boxes, originals, regions)
    name = Path(image_path).name
    old = data.get("imagePath")
    old = old.replace("\\", "/") if isinstance(old, str) else None
    if image_ref is not None:  # the written file must point at the image from where it is
        keep = old is not None and os.path.normpath(old) == os.path.normpath(str(image_ref).replace("\\", "/"))
    else:  # a sidecar saved in place keeps its imagePath while it names this image
        keep = old is not None and old.rsplit("/", 1)[-1] == name
    if not keep:
        data["imagePath"] = str(image_ref) if image_ref else name
    if image_size is not None:
        data["imageWidth"], data["imageHeight"] = int(image_size[0]), int(image_size[1])
    if order:
        data = {**{k: data[k] for k in order if k in data}, **{k: v for k, v in data.items() if k not in order}}
    return json_text(data)


def write(path, image_path, boxes, extra=None, image_size=None, image_ref=None) -> None:
    atomic_write_text(path, to_json(image_path, boxes, extra, image_size, image_ref))
