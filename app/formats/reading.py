"""Reading annotation files into an ImportResult, one reader per format, each given one file:
it matches the file's images, adds their boxes and sizes, and fills the file's report. What the
writers need to give back what was read (labelme extras, VOC elements, COCO header and image
records, YOLO class lists, CSV layout) goes into ``result.meta``."""
from __future__ import annotations

from pathlib import Path

from app.formats import coco, csvfmt, labelme, voc, yolo
from app.formats.common import AnnotationError, printable
from app.formats.yolo_dataset import find_class_source
from app.images import image_size


class ReadContext:
    def __init__(self, result, index, ann_root, class_stop):
        self.result, self.index, self.ann_root, self.class_stop = result, index, ann_root, class_stop
        self.json_cache = {}
        self.coco_datasets = []  # (path, CocoDoc) read so far: ground truth for results lists
        self._classes = {}

    def json(self, path):
        path = Path(path)
        if path not in self.json_cache:
            self.json_cache[path] = labelme.load_json(path)
        return self.json_cache[path]

    def classes_for(self, label_file):
        folder = Path(label_file).parent
        if folder not in self._classes:
            source = find_class_source(folder, self.class_stop)
            self._classes[folder] = source
            where = printable(source.path) if source.path else "none found: labels are the class ids"
            note = f"YOLO class names for {printable(folder)}: {where}"
            if note not in self.result.notes:
                self.result.notes.append(note)
        return self._classes[folder]

    def meta(self, fmt):
        return self.result.meta.setdefault(fmt, {})


def _missing(ctx, report, named, what="the image it annotates"):
    ctx.result.refuse(report, f"{what} ({printable(named) if named else 'no name given'}) is not among the images")


def read_labelme(path, ctx, report):
    doc = labelme.read(path, derived=True)
    image = ctx.index.for_file(path, ctx.ann_root, doc.image_path)
    if image is None and doc.has_image_data:
        name = (doc.image_path or "").replace("\\", "/").rsplit("/", 1)[-1] or Path(path).stem + ".png"
        image = Path(path).parent / name
        ctx.result.embedded[image] = Path(path)
        size = f" ({doc.image_size[0]}x{doc.image_size[1]})" if doc.image_size else ""
        report.warnings.append(f"image file {printable(name)} is missing: the imageData embedded in the file is used{size}")
    if image is None:
        return _missing(ctx, report, doc.image_path)
    ctx.result.add(image, doc.boxes, doc.image_size, source=path)
    ctx.meta("labelme")[image] = doc.extra
    report.boxes, report.derived, report.images = len(doc.boxes), doc.derived, 1
    report.skipped += doc.skipped
    report.warnings += doc.warnings


def read_voc(path, ctx, report):
    doc = voc.read_document(path)
    image = ctx.index.for_file(path, ctx.ann_root, doc.filename)
    if image is None and doc.path:
        image = ctx.index.find(doc.path, base=Path(path).parent)
    if image is None:
        return _missing(ctx, report, doc.filename or doc.path)
    ctx.result.add(image, doc.boxes, doc.size, source=path)
    ctx.meta("voc")[image] = doc.xml
    report.boxes, report.images = len(doc.boxes), 1
    report.warnings += doc.warnings


def read_yolo(path, ctx, report):
    image = ctx.index.for_file(path, ctx.ann_root)
    if image is None:
        return _missing(ctx, report, Path(path).stem + ".*", "an image for this label file")
    source = ctx.classes_for(path)
    try:
        size = ctx.result.sizes.get(image) or image_size(image)
    except (OSError, ValueError) as exc:
        return ctx.result.refuse(report, f"cannot read the size of its image {printable(image)} ({exc})")
    boxes = yolo.read(path, source.classes, size, source.kpt_shape, report)
    ctx.result.add(image, boxes, size, source=path)
    ctx.meta("yolo")[image] = source.classes
    report.boxes, report.images = len(boxes), 1


def _ground_truth(path, ctx):
    """The dataset file a results list refers to: one read in this run, else a sibling."""
    for _, doc in ctx.coco_datasets:
        return doc
    for sibling in sorted(Path(path).parent.glob("*.json")):
        if sibling == Path(path):
            continue
        try:
            data = ctx.json(sibling)
        except AnnotationError:
            continue
        if coco.sniff(data) == "dataset":
            doc = coco.read_document(sibling, data)
            ctx.coco_datasets.append((sibling, doc))
            ctx.result.notes.append(f"{printable(path)}: image ids and category names from {printable(sibling)}")
            return doc
    return None


def read_coco(path, ctx, report):
    data = ctx.json(path)
    gt = _ground_truth(path, ctx) if coco.sniff(data) == "results" else None
    doc = coco.read_document(path, data, gt)
    meta = ctx.meta("coco")
    if not doc.results:
        ctx.coco_datasets.append((Path(path), doc))
        meta.setdefault("header", doc.header)
    images = doc.images or [{"id": i} for i in doc.boxes]
    missing, n_boxes = [], 0
    for img in images:
        name = img.get("file_name")
        image = ctx.index.find(name, base=Path(path).parent) if name else _by_number(ctx.index, img["id"])
        if image is None:
            if doc.boxes.get(img["id"]) or not doc.results:
                missing.append(str(name if name else f"image_id {img['id']}"))
            continue
        boxes = doc.boxes.get(img["id"], [])
        size = (img["width"], img["height"]) if isinstance(img.get("width"), int) and isinstance(img.get("height"), int) else None
        ctx.result.add(image, boxes, size, source=path)
        meta.setdefault("images", {})[image] = img
        n_boxes += len(boxes)
        report.images += 1
    report.boxes = n_boxes
    report.warnings += doc.warnings
    if missing and report.images == 0 and n_boxes == 0:
        return ctx.result.refuse(report, f"none of its {len(missing)} image(s) are among the images: " + _few(missing))
    if missing:
        ctx.result.errors.append(f"{printable(path)}: {len(missing)} image(s) named here are not among the images: " + _few(missing))


def _by_number(index, image_id):
    """Results lists without a dataset file: image id 42 -> COCO_val2014_000000000042.jpg."""
    found = [img for img in index.images if _trailing_int(img.stem) == image_id]
    return found[0] if len(found) == 1 else None


def _trailing_int(stem):
    digits = ""
    for ch in reversed(stem):
        if not ch.isdigit():
            break
        digits = ch + digits
    return int(digits) if digits else None


def _few(names, n=5):
    return ", ".join(printable(x) for x in names[:n]) + (" ..." if len(names) > n else "")


def read_csv(path, ctx, report):
    doc = csvfmt.read_document(path)
    ctx.meta("csv").setdefault("layout", doc.layout)
    missing = []
    for name, boxes in doc.boxes.items():
        image = ctx.index.find(name, base=Path(path).parent)
        if image is None:
            missing.append(name)
            continue
        ctx.result.add(image, boxes, doc.sizes.get(name), source=path)
        report.boxes += len(boxes)
        report.images += 1
    report.warnings += doc.warnings
    if missing and report.images == 0:
        return ctx.result.refuse(report, f"none of its {len(missing)} image(s) are among the images: " + _few(missing))
    if missing:
        ctx.result.errors.append(f"{printable(path)}: {len(missing)} image(s) named here are not among the images: " + _few(missing))
