"""COCO detection JSON: one file, many images (file_name relative to the images root)."""
from __future__ import annotations

import json
from pathlib import Path

from app.atomic import atomic_write_text
from app.formats.common import AnnotationError, finite_box
from app.formats.labelme import load_json


def read(path):
    """-> {file_name: ((w, h) or None, [boxes])} in the file's image order."""
    path = Path(path)
    data = load_json(path)
    for key in ("images", "annotations"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise AnnotationError(f"{path}: key '{key}' must be a list")
    categories = {}
    for i, cat in enumerate(data.get("categories", [])):
        try:
            categories[cat["id"]] = str(cat["name"])
        except (KeyError, TypeError) as exc:
            raise AnnotationError(f"{path}: categories[{i}] needs 'id' and 'name'") from exc
    images, by_id = {}, {}
    for i, img in enumerate(data["images"]):
        try:
            name, image_id = str(img["file_name"]), img["id"]
        except (KeyError, TypeError) as exc:
            raise AnnotationError(f"{path}: images[{i}] needs 'id' and 'file_name'") from exc
        size = (img["width"], img["height"]) if "width" in img and "height" in img else None
        images[name] = (size, [])
        by_id[image_id] = name
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "bbox" not in ann or "image_id" not in ann:
            raise AnnotationError(f"{path}: annotations[{i}] needs 'image_id' and 'bbox'")
        if ann["image_id"] not in by_id:
            raise AnnotationError(f"{path}: annotations[{i}].image_id {ann['image_id']!r} is not in 'images'")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise AnnotationError(f"{path}: annotations[{i}].bbox must be [x, y, width, height], got {bbox!r}")
        label = categories.get(ann.get("category_id"), str(ann.get("category_id", "")))
        attrs = (("iscrowd", str(ann["iscrowd"])),) if ann.get("iscrowd") else ()
        x, y, w, h = bbox
        try:
            corners = (x, y, float(x) + float(w), float(y) + float(h))
        except (TypeError, ValueError) as exc:
            raise AnnotationError(f"{path}: annotations[{i}].bbox must hold numbers, got {bbox!r}") from exc
        images[by_id[ann["image_id"]]][1].append(finite_box(path, f"annotations[{i}].bbox", *corners, label=label, attrs=attrs))
    return images


def to_json(entries) -> str:
    """``entries``: list of (file_name, (w, h) or None, boxes)."""
    labels = sorted({b.label for _, _, boxes in entries for b in boxes})
    cat_id = {name: i + 1 for i, name in enumerate(labels)}
    images, annotations = [], []
    for image_id, (name, size, boxes) in enumerate(entries, start=1):
        entry = {"id": image_id, "file_name": name}
        if size is not None:
            entry["width"], entry["height"] = int(size[0]), int(size[1])
        images.append(entry)
        for b in boxes:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cat_id[b.label],
                "bbox": [b.x1, b.y1, b.width, b.height], "area": b.width * b.height,
                "iscrowd": int(b.attr("iscrowd", 0)),
            })
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in cat_id.items()]}
    return json.dumps(data, indent=1, ensure_ascii=False)


def write(path, entries) -> None:
    atomic_write_text(path, to_json(entries))
