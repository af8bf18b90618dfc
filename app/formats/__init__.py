"""Qt-free annotation readers and writers: labelme, Pascal VOC, YOLO, COCO, CSV.

Public API (stable; extended by keyword arguments only)::

    from app.formats import read_annotations, write_annotations
    result = read_annotations("dataset/", images=None)      # a file, or a dataset root folder
    print(result.summary_text())                             # per file: imported, derived, skipped, refused
    write_annotations("coco", "out.json", [(img, boxes, result.sizes.get(img)) for img, boxes in result.boxes.items()],
                      images_root="dataset/", like=result)   # like=: write back what was read, unchanged

``read_annotations`` never half-imports a file and never raises for a bad file: each one that
cannot be read is named with its reason in ``result.errors`` and ``result.files``.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from app.formats.common import AnnotationError, printable
from app.formats.matching import ImageIndex
from app.formats.reading import ReadContext
from app.formats.registry import FORMATS, FORMATS_TABLE, formats_for_suffix
from app.formats.report import FileReport, ImportResult
from app.formats.yolo_dataset import CLASS_LISTS
from app.formats.writing import per_image_plan, table_plan, _Sizes
from app.images import is_image

__all__ = ["FORMATS", "FORMATS_TABLE", "AnnotationError", "FileReport", "ImportResult", "detect_format",
           "read_annotations", "write_annotations"]

DATASET_FILES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml", "obj.data")


def detect_format(path) -> str:
    """The format of an annotation file, or the most common one in a folder."""
    path = Path(path)
    if path.is_dir():
        found = Counter(fmt.name for fmt, _ in _plan(path, None, _ctx(path, []))[0])
        if not found:
            raise AnnotationError(f"{path}: no annotation files (labelme, VOC, YOLO, COCO, CSV) in this folder")
        return found.most_common(1)[0][0]
    return _detect_file(path, _ctx(path.parent, []))


def _detect_file(path, ctx) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":  # parsed once: the context keeps it for the reader
        return "coco" if path.is_file() and FORMATS_TABLE["coco"].detect(path, ctx) else "labelme"
    for fmt in FORMATS_TABLE.values():
        if fmt.suffix == suffix:
            return fmt.name
    raise AnnotationError(f"{path}: unknown annotation format (expected .json, .xml, .txt or .csv, or a dataset folder)")


def _ctx(root, images, images_root=None, result=None, class_stop=None):
    return ReadContext(result or ImportResult(), ImageIndex(images, images_root), root, class_stop or root)


def _plan(folder, fmt, ctx):
    """[(Format, file)] for every annotation file under ``folder``, and the files not read."""
    plan, unread = [], []
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(folder).parts)):
        if is_image(f) or f.name in DATASET_FILES + CLASS_LISTS + ("classes.csv",) \
                or f.suffix.lower() in (".yaml", ".yml", ".names", ".data", ".md"):
            continue
        candidates = [c for c in formats_for_suffix(f.suffix) if fmt is None or c.name == fmt]
        hit = next((c for c in candidates if c.detect(f, ctx)), None)
        if hit is None and f.suffix.lower() == ".json" and candidates:
            try:
                ctx.json(f)
            except AnnotationError:
                hit = candidates[0]  # broken JSON: let its reader name the problem
        if hit is not None:
            plan.append((hit, f))
            if hit.name == "labelme":
                ctx.json_cache.pop(f, None)  # its reader parses it again; do not hold every sidecar
        elif candidates or f.suffix.lower() in (".json", ".xml", ".txt", ".csv"):
            unread.append(f)
    # COCO datasets before results lists, so results find their image ids
    plan.sort(key=lambda pf: pf[0].name == "coco" and isinstance(ctx.json_cache.get(pf[1]), list))
    return plan, unread


def _default_images(path, images_root):
    """Every image under ``images_root``, else under the dataset folder (for a file: its folder,
    or the one above when that has none, as for ``annotations/instances.json``)."""
    bases = [Path(images_root)] if images_root else ([path] if path.is_dir() else [path.parent, path.parent.parent])
    for base in bases:
        found = sorted(p for p in base.rglob("*") if p.is_file() and is_image(p))
        if found:
            return found
    return []


def read_annotations(path, images, images_root=None, fmt=None) -> ImportResult:
    """Boxes for ``images`` (None: every image under ``images_root``, else under ``path``) from
    an annotation file or a dataset root folder (``data.yaml``, a COCO file, ``Annotations/``,
    ``labels/`` ...). ``fmt`` (one of FORMATS) skips detection. Several formats in one folder
    are all read, and the summary says so."""
    path = Path(path)
    result = ImportResult()
    if fmt is not None and fmt not in FORMATS:
        result.errors.append(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        return result
    if path.is_file() and (path.name in DATASET_FILES or path.suffix.lower() in (".yaml", ".yml")):
        path = path.parent  # data.yaml / obj.data name their dataset's root
    if not path.exists():
        result.errors.append(f"{printable(path)}: no such file or folder")
        return result
    images = _default_images(path, images_root) if images is None else list(images)
    if path.is_dir():
        ctx = _ctx(path, images, images_root, result, path)
        plan, unread = _plan(path, fmt, ctx)
        if not plan:
            result.errors.append(f"{printable(path)}: no {fmt or 'annotation'} files (labelme, VOC, YOLO, COCO, CSV) in this folder")
        if unread:
            result.notes.append(f"{len(unread)} file(s) not read (not annotations): "
                                + ", ".join(printable(f.relative_to(path)) for f in unread[:5]) + (" ..." if len(unread) > 5 else ""))
    else:
        ctx = _ctx(path.parent, images, images_root, result, path.parents[min(2, len(path.parents) - 1)])
        try:
            name = fmt or _detect_file(path, ctx)
        except AnnotationError as exc:
            result.errors.append(str(exc))
            return result
        plan = [(FORMATS_TABLE[name], path)]
    _read_all(plan, ctx)
    kinds = Counter(f.name for f, _ in plan)
    if len(kinds) > 1:
        result.notes.append("several formats found, all were read: " + ", ".join(f"{k} ({n} file(s))" for k, n in kinds.items())
                            + "; pass a format to read only one")
    return result


def _read_all(plan, ctx):
    for fmt, f in plan:
        report = FileReport(f, fmt.name)
        ctx.result.files.append(report)
        try:
            fmt.read(f, ctx, report)
        except AnnotationError as exc:
            ctx.result.refuse(report, _reason(exc, f))
        except Exception as exc:  # one bad file never costs the others, and no traceback reaches the user
            ctx.result.refuse(report, f"{type(exc).__name__}: {exc}")


def _reason(exc, f):
    text = str(exc)
    prefix = f"{f}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def write_annotations(fmt, target, entries, images_root=None, overwrite=False, like=None, problems=None) -> list[Path]:
    """Write ``entries`` = [(image path, boxes, (w, h) or None)] in ``fmt`` to ``target`` (a
    folder for labelme/VOC/YOLO, a file for COCO and CSV). Refuses to replace existing files
    unless ``overwrite``: a lossier format must not silently clobber a user's file.
    ``like``: the ImportResult the boxes came from; what the user did not change (shapes, ids,
    unknown keys and elements, class ids, the CSV layout) is written back as it was read.
    ``problems``: a list to collect images that could not be written (their size unreadable);
    without it the first such image raises ValueError."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    target = Path(target)
    own = [] if problems is None else problems
    sizes = _Sizes(like, own)
    entries = [(Path(img), list(boxes), size) for img, boxes, size in entries]
    planner = per_image_plan if FORMATS_TABLE[fmt].per_image else table_plan
    plan = planner(fmt, target, entries, images_root, like, sizes)
    if own and problems is None:
        raise ValueError("; ".join(own))
    existing = [p for p, _ in plan if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"would replace {len(existing)} existing file(s), e.g. {printable(existing[0])}")
    for p, write in plan:
        p.parent.mkdir(parents=True, exist_ok=True)
        write(p)
    return [p for p, _ in plan]
