"""labelme JSON sidecars: rectangles become boxes; every other shape and key is kept on
write-back; a rectangle's group_id, description and flags travel with its box."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from app.atomic import atomic_write_text
from app.formats.common import AnnotationError, finite_box

LABELME_VERSION = "5.4.1"
SHAPE_KEYS = ("group_id", "description", "flags")


@dataclass
class LabelmeDoc:
    boxes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # other top-level keys + "_other_shapes"
    image_path: str | None = None


def sidecar_path(image_path) -> Path:
    return Path(image_path).with_suffix(".json")


def load_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc


def read(path) -> LabelmeDoc:
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a JSON object at the top level")
    shapes = data.get("shapes", [])
    if not isinstance(shapes, list):
        raise AnnotationError(f"{path}: key 'shapes' must be a list")
    boxes, others = [], []
    for i, shape in enumerate(shapes):
        if not isinstance(shape, dict):
            raise AnnotationError(f"{path}: shapes[{i}] must be an object")
        if shape.get("shape_type", "polygon") != "rectangle":
            others.append(shape)
            continue
        pts = shape.get("points")
        if not (isinstance(pts, list) and len(pts) == 2 and all(isinstance(p, list) and len(p) == 2 for p in pts)):
            raise AnnotationError(f"{path}: shapes[{i}].points must be two [x, y] points, got {pts!r}")
        attrs = tuple((k, json.dumps(shape[k])) for k in SHAPE_KEYS if k in shape)
        label = shape.get("label", "")
        boxes.append(finite_box(path, f"shapes[{i}].points", pts[0][0], pts[0][1], pts[1][0], pts[1][1], str(label), attrs))
    extra = {k: v for k, v in data.items() if k != "shapes"}
    extra["_other_shapes"] = others
    image_path = data.get("imagePath")
    return LabelmeDoc(boxes, extra, image_path if isinstance(image_path, str) else None)


def to_json(image_path, boxes, extra=None, image_size=None) -> str:
    extra = dict(extra or {})
    others = extra.pop("_other_shapes", [])
    data = {"version": LABELME_VERSION, "flags": {}}
    data.update(extra)
    shapes = []
    for b in boxes:
        shape = {"label": b.label, "points": [[b.x1, b.y1], [b.x2, b.y2]], "group_id": None, "description": "",
                 "shape_type": "rectangle", "flags": {}}
        shape.update({k: json.loads(v) for k, v in b.attrs if k in SHAPE_KEYS})
        shapes.append(shape)
    data["shapes"] = shapes + list(others)
    data["imagePath"] = Path(image_path).name
    data.setdefault("imageData", None)
    if image_size is not None:
        data["imageWidth"], data["imageHeight"] = int(image_size[0]), int(image_size[1])
    return json.dumps(data, indent=2, ensure_ascii=False)


def write(path, image_path, boxes, extra=None, image_size=None) -> None:
    atomic_write_text(path, to_json(image_path, boxes, extra, image_size))
