"""COCO detection JSON: a dataset file (``images``, ``annotations``, ``categories``) or a
detector's results list (``[{image_id, category_id, bbox, score}]``). ``file_name`` may hold
subfolders or lack an extension; category ids may be sparse; ``iscrowd`` annotations with RLE
segmentations use their bbox. Each box keeps its annotation (ids, segmentation, extra keys) and
the file keeps its header (info, licenses, every category) so write-back loses nothing."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from app.atomic import atomic_write_text
from app.formats.common import AnnotationError, FLOAT32_NOTE, finite_box, json_text, unchanged
from app.formats.labelme import load_json


@dataclass
class CocoDoc:
    results: bool = False  # a detector's results list (no images of its own)
    header: dict = field(default_factory=dict)  # every top-level key but images/annotations
    images: list = field(default_factory=list)  # the image dicts, in file order
    boxes: dict = field(default_factory=dict)  # image id -> [Box]
    categories: dict = field(default_factory=dict)  # id -> name
    warnings: list = field(default_factory=list)


def sniff(data) -> str | None:
    """'dataset', 'results' or None for parsed JSON."""
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return "dataset"
    if isinstance(data, list) and data and all(isinstance(d, dict) and "image_id" in d and "bbox" in d for d in data[:50]):
        return "results"
    return None


def read_document(path, data=None, ground_truth=None) -> CocoDoc:
    """``ground_truth``: a dataset CocoDoc whose images and categories a results list refers to."""
    path = Path(path)
    data = load_json(path) if data is None else data
    try:
        return _read(path, data, ground_truth)
    except AnnotationError:
        raise
    except Exception as exc:  # "image_id": [1], "categories": 5, ...: named, never a traceback
        raise AnnotationError(f"{path}: malformed COCO file ({type(exc).__name__}: {exc})") from exc


def _read(path, data, gt) -> CocoDoc:
    kind = sniff(data)
    doc = CocoDoc(results=kind == "results")
    if kind == "results":
        anns = data
        if gt is not None:
            doc.images, doc.categories = gt.images, gt.categories
    else:
        for key in ("images", "annotations"):
            if not isinstance(data, dict) or not isinstance(data.get(key), list):
                raise AnnotationError(f"{path}: key '{key}' must be a list")
        doc.header = {k: v for k, v in data.items() if k not in ("images", "annotations")}
        cats = data.get("categories", [])
        if not isinstance(cats, list):
            raise AnnotationError(f"{path}: key 'categories' must be a list, got {type(cats).__name__}")
        for i, cat in enumerate(cats):
            if not (isinstance(cat, dict) and _hashable(cat.get("id")) and "name" in cat):
                raise AnnotationError(f"{path}: categories[{i}] needs 'id' and 'name'")
            doc.categories[cat["id"]] = str(cat["name"])
        for i, img in enumerate(data["images"]):
            if not (isinstance(img, dict) and _hashable(img.get("id")) and isinstance(img.get("file_name"), str)):
                raise AnnotationError(f"{path}: images[{i}] needs 'id' and a 'file_name' string")
        doc.images = data["images"]
        anns = data["annotations"]
    known = {img["id"] for img in doc.images}
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict) or "bbox" not in ann or "image_id" not in ann:
            raise AnnotationError(f"{path}: annotations[{i}] needs 'image_id' and 'bbox'")
        image_id = ann["image_id"]
        if not _hashable(image_id) or (known and image_id not in known) or (not known and not doc.results):
            raise AnnotationError(f"{path}: annotations[{i}].image_id {image_id!r} is not in 'images'")
        doc.boxes.setdefault(image_id, []).append(_box(path, i, ann, doc))
    return doc


def _hashable(v) -> bool:
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _box(path, i, ann, doc):
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4):
        raise AnnotationError(f"{path}: annotations[{i}].bbox must be [x, y, width, height], got {bbox!r}")
    cat = ann.get("category_id")
    if cat is not None and not _hashable(cat):
        raise AnnotationError(f"{path}: annotations[{i}].category_id must be an id, got {cat!r}")
    label = doc.categories.get(cat, str(cat)) if cat is not None else ""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{path}: annotations[{i}].bbox must hold numbers, got {bbox!r}") from exc
    attrs = [("coco_ann", json.dumps(ann))]
    if ann.get("iscrowd"):
        attrs.append(("iscrowd", str(ann["iscrowd"])))
    if "score" in ann:
        attrs.append(("score", str(ann["score"])))
    box = finite_box(path, f"annotations[{i}].bbox", x, y, x + w, y + h, label=label, attrs=attrs)
    if box.problem():
        doc.warnings.append(f"annotations[{i}] of {path.name}: {FLOAT32_NOTE}")
    return box


def read(path):
    """-> {file_name: ((w, h) or None, [boxes])} in the file's image order (dataset files)."""
    doc = read_document(path)
    out = {}
    for img in doc.images:
        size = (img["width"], img["height"]) if "width" in img and "height" in img else None
        out[img["file_name"]] = (size, doc.boxes.get(img["id"], []))
    return out


def _categories(entries, header):
    cats = [dict(c) for c in header.get("categories", [])] if isinstance(header.get("categories"), list) else []
    by_name = {}
    for c in cats:
        by_name.setdefault(str(c["name"]), c["id"])
    next_id = max([c["id"] for c in cats if isinstance(c["id"], int)] + [0]) + 1
    for label in sorted({b.label for _, _, boxes, _ in entries for b in boxes} - set(by_name)):
        cats.append({"id": next_id, "name": label, "supercategory": ""})
        by_name[label] = next_id
        next_id += 1
    return cats, by_name


def _annotation(b, image_id, cat_id, ann_id):
    ann = json.loads(b.attr("coco_ann")) if b.attr("coco_ann") else {}
    ann = {**ann, "id": ann_id, "image_id": image_id, "category_id": cat_id}
    if not (ann.get("bbox") and unchanged(b)):
        ann["bbox"] = [b.x1, b.y1, b.width, b.height]
        ann["area"] = b.width * b.height
        if ann.get("segmentation"):
            ann["segmentation"] = []  # the outline no longer matches the moved box
    if not b.attr("coco_ann"):  # a new box gets the keys COCO tools expect; a read one keeps its own
        ann.update(area=b.width * b.height, iscrowd=int(b.attr("iscrowd", 0)), segmentation=[])
    return ann


def to_json(entries, header=None) -> str:
    """``entries``: list of (file_name, (w, h) or None, boxes[, image dict read before]);
    ``header``: the top-level keys read before (info, licenses, categories, extra keys)."""
    entries = [tuple(e) + (None,) * (4 - len(e)) for e in entries]
    header = dict(header or {})
    cats, cat_id = _categories(entries, header)
    used_img = {e[3]["id"] for e in entries if e[3] and _hashable(e[3].get("id"))}
    used_ann = {json.loads(b.attr("coco_ann")).get("id") for _, _, boxes, _ in entries for b in boxes if b.attr("coco_ann")}
    new_img = _fresh_ids(used_img)
    new_ann = _fresh_ids(used_ann)
    seen_img, seen_ann = set(), set()
    images, annotations = [], []
    for name, size, boxes, meta in entries:
        img = dict(meta or {})
        if img.get("id") in seen_img or not _hashable(img.get("id")):
            img["id"] = next(new_img)
        seen_img.add(img["id"])
        img["file_name"] = name
        if size is not None:
            img["width"], img["height"] = int(size[0]), int(size[1])
        images.append(img)
        for b in boxes:
            old = json.loads(b.attr("coco_ann")).get("id") if b.attr("coco_ann") else None
            ann_id = old if _hashable(old) and old not in seen_ann else next(new_ann)
            seen_ann.add(ann_id)
            annotations.append(_annotation(b, img["id"], cat_id[b.label], ann_id))
    data = {k: v for k, v in header.items() if k not in ("images", "annotations", "categories")}
    data.update(images=images, annotations=annotations, categories=cats)
    return json_text(data, indent=1)


def _fresh_ids(used):
    n = max([u for u in used if isinstance(u, int)] + [0])
    while True:
        n += 1
        if n not in used:
            yield n


def write(path, entries, header=None) -> None:
    atomic_write_text(path, to_json(entries, header))
