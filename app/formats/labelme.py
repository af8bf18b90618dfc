"""labelme JSON: rectangles become boxes; every other shape and key is kept on write-back."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from app.atomic import atomic_write_text

LABELME_VERSION = "5.4.1"


@dataclass
class RawBox:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str

    def corners(self):
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass
class LabelmeDoc:
    boxes: list[RawBox] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # other keys + "_other_shapes"


def sidecar_path(image_path) -> Path:
    return Path(image_path).with_suffix(".json")


def read(path) -> LabelmeDoc:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level")
    shapes = data.get("shapes", [])
    if not isinstance(shapes, list):
        raise ValueError(f"{path}: key 'shapes' must be a list")
    boxes, others = [], []
    for i, shape in enumerate(shapes):
        if not isinstance(shape, dict):
            raise ValueError(f"{path}: shapes[{i}] must be an object")
        if shape.get("shape_type", "polygon") != "rectangle":
            others.append(shape)
            continue
        pts = shape.get("points")
        try:
            (xa, ya), (xb, yb) = [(float(p[0]), float(p[1])) for p in pts]
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"{path}: shapes[{i}].points must be two [x, y] points, got {pts!r}") from exc
        values = (xa, ya, xb, yb)
        if any(v != v or v in (float("inf"), float("-inf")) for v in values):
            raise ValueError(f"{path}: shapes[{i}].points must be finite, got {pts!r}")
        label = shape.get("label", "")
        boxes.append(RawBox(min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb), str(label)))
    extra = {k: v for k, v in data.items() if k != "shapes"}
    extra["_other_shapes"] = others
    return LabelmeDoc(boxes, extra)


def to_json(image_path, boxes, extra=None, image_size=None) -> str:
    extra = dict(extra or {})
    others = extra.pop("_other_shapes", [])
    data = {"version": LABELME_VERSION, "flags": {}}
    data.update(extra)
    shapes = [
        {
            "label": b.label,
            "points": [[b.x1, b.y1], [b.x2, b.y2]],
            "group_id": None,
            "description": "",
            "shape_type": "rectangle",
            "flags": {},
        }
        for b in boxes
    ]
    data["shapes"] = shapes + list(others)
    data["imagePath"] = Path(image_path).name
    data.setdefault("imageData", None)
    if image_size is not None:
        data["imageWidth"], data["imageHeight"] = int(image_size[0]), int(image_size[1])
    return json.dumps(data, indent=2, ensure_ascii=False)


def write(path, image_path, boxes, extra=None, image_size=None) -> None:
    atomic_write_text(path, to_json(image_path, boxes, extra, image_size))
