"""Writing boxes in any format. Per-image formats get one file per image named after the image
(only its last suffix replaced, so ``x_png.rf.<hash>.jpg`` never merges with a sibling); two
images that would share a file are refused, never merged. With ``like`` (the ImportResult the
boxes came from) what the user did not change is written back as it was read."""
from __future__ import annotations

import os
from pathlib import Path

from app.formats import coco, csvfmt, labelme, voc, yolo
from app.formats.common import printable, relative_stem, with_extension
from app.images import image_size

EXTENSIONS = {"labelme": ".json", "voc": ".xml", "yolo": ".txt"}


def _meta(like, fmt):
    return (getattr(like, "meta", None) or {}).get(fmt, {})


class _Sizes:
    """(w, h) of each image: given, read before, or from the file; None (and a problem) if none."""

    def __init__(self, like, problems):
        self.known = dict(getattr(like, "sizes", None) or {})
        self.problems = problems

    def __call__(self, image, given):
        if given is not None:
            return tuple(given)
        if Path(image) in self.known:
            return self.known[Path(image)]
        try:
            return image_size(image)
        except (OSError, ValueError) as exc:
            self.problems.append(f"{printable(image)}: cannot read the image size ({exc})")
            return None


def _yolo_rel(stem: Path) -> Path:
    """images/train/x -> labels/train/x (Ultralytics looks for labels there)."""
    parts = list(stem.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return stem


def per_image_plan(fmt, target, entries, root, like, sizes):
    plan, owners = [], {}
    meta = _meta(like, fmt)
    ids = None
    if fmt == "yolo":
        classes = next((c for c in meta.values() if c), None)
        ids = yolo.class_ids(sorted({b.label for _, boxes, _ in entries for b in boxes}), classes)
        plan.append((target / yolo.CLASSES_FILE, lambda p: yolo.write_classes(p, ids)))
    for img, boxes, size in entries:
        stem = relative_stem(img, root)
        out = target / with_extension(_yolo_rel(stem) if fmt == "yolo" else stem, EXTENSIONS[fmt])
        if out in owners:
            raise ValueError(f"{printable(img)} and {printable(owners[out])} would both be written to {printable(out)}; "
                             "rename one (images are never merged)")
        owners[out] = img
        img = Path(img)
        if fmt == "labelme":
            ref = os.path.relpath(img.resolve(), out.parent.resolve()) if out.parent.resolve() != img.parent.resolve() else img.name
            size = size or (sizes.known.get(img))
            plan.append((out, lambda p, img=img, boxes=boxes, size=size, ref=ref:
                         labelme.write(p, img, boxes, meta.get(img), size, image_ref=ref)))
        elif fmt == "voc":
            original = meta.get(img)
            size = size if original else sizes(img, size)
            plan.append((out, lambda p, img=img, boxes=boxes, size=size, original=original:
                         voc.write(p, img, boxes, size, original=original)))
        else:
            size = sizes(img, size)
            if size is None:
                continue
            plan.append((out, lambda p, boxes=boxes, size=size: yolo.write(p, boxes, ids, size)))
    return plan


def _names(entries, root, like, fmt):
    images_meta = _meta(like, "coco").get("images", {}) if fmt == "coco" else {}
    names = []
    for img, _, _ in entries:
        old = images_meta.get(Path(img), {}).get("file_name")
        names.append(old if isinstance(old, str) else with_extension(relative_stem(img, root), Path(img).suffix).as_posix())
    return names


def table_plan(fmt, target, entries, root, like, sizes):
    names = _names(entries, root, like, fmt)
    if fmt == "coco":
        images_meta = _meta(like, "coco").get("images", {})
        rows = [(n, sizes(img, size), boxes, images_meta.get(Path(img))) for n, (img, boxes, size) in zip(names, entries)]
        header = _meta(like, "coco").get("header")
        return [(target, lambda p: coco.write(p, rows, header))]
    layout = _meta(like, "csv").get("layout")
    rows = [(n, boxes, size) for n, (_, boxes, size) in zip(names, entries)]
    return [(target, lambda p: csvfmt.write(p, rows, layout))]
