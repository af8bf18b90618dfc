"""Where a YOLO label file's class names come from: ``classes.txt`` (LabelImg, YOLO-Mark),
Darknet ``obj.names``/``obj.data``, Ultralytics/Roboflow ``data.yaml`` (``names`` as a list or a
mapping, ``kpt_shape`` for pose). The nearest one walking up from the label file wins."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.formats.common import AnnotationError
from app.formats.yolo import CLASSES_FILE, read_classes

YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")
CLASS_LISTS = (CLASSES_FILE, "obj.names", "classes.names", "coco.names", "_darknet.labels")


@dataclass
class ClassSource:
    classes: dict | None  # {id: name}, None when no class list was found (labels are the ids)
    kpt_shape: tuple | None = None
    path: Path | None = None


def read_yaml(path) -> ClassSource:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise AnnotationError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict) or "names" not in data:
        raise AnnotationError(f"{path}: no 'names' (the class list) in this YAML file")
    names = data["names"]
    if isinstance(names, list):
        classes = {i: str(n) for i, n in enumerate(names)}
    elif isinstance(names, dict):
        try:
            classes = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError) as exc:
            raise AnnotationError(f"{path}: 'names' keys must be class ids (integers)") from exc
    else:
        raise AnnotationError(f"{path}: 'names' must be a list or a mapping, got {type(names).__name__}")
    kpt = data.get("kpt_shape")
    kpt_shape = tuple(int(v) for v in kpt) if isinstance(kpt, list) and len(kpt) == 2 else None
    return ClassSource(classes, kpt_shape, path)


def read_obj_data(path) -> ClassSource:
    """Darknet obj.data: ``names = data/obj.names`` (relative to where darknet ran; tried
    beside obj.data too)."""
    path = Path(path)
    try:
        lines = path.read_bytes().decode("utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read ({exc})") from exc
    entries = dict(line.split("=", 1) for line in lines if "=" in line)
    names = {k.strip(): v.strip() for k, v in entries.items()}.get("names")
    if not names:
        raise AnnotationError(f"{path}: no 'names = ...' line")
    rel = Path(names.replace("\\", "/"))
    for candidate in (path.parent / rel, path.parent / rel.name):
        if candidate.is_file():
            return ClassSource(read_classes(candidate), None, candidate)
    raise AnnotationError(f"{path}: names file {names!r} not found (looked beside this file)")


def find_class_source(folder, stop=None) -> ClassSource:
    """The nearest class list at or above ``folder`` (not above ``stop`` when given)."""
    folder = Path(folder).resolve()
    stop = Path(stop).resolve() if stop else None
    for d in [folder, *folder.parents]:
        for name in CLASS_LISTS:
            if (d / name).is_file():
                return ClassSource(read_classes(d / name), None, d / name)
        for name in YAML_NAMES:
            if (d / name).is_file():
                return read_yaml(d / name)
        for other in sorted(d.glob("*.y*ml")):  # Ultralytics dataset files have any name (coco8.yaml)
            try:
                return read_yaml(other)
            except AnnotationError:
                continue
        if (d / "obj.data").is_file():
            return read_obj_data(d / "obj.data")
        if stop is not None and d == stop:
            break
    return ClassSource(None)
