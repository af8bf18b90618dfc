"""Pascal VOC XML, one file per image. Coordinates are written as given (no 1-based shift);
pose, truncated and difficult travel with each box."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from app.atomic import atomic_write_bytes
from app.formats.common import AnnotationError, finite_box, number_text

OBJECT_FLAGS = ("pose", "truncated", "difficult", "occluded")


def read(path):
    """-> (image file name or None, (w, h) or None, boxes)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise AnnotationError(f"{path}: not valid XML ({exc})") from exc
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: root element must be <annotation>, got <{root.tag}>")
    filename = root.findtext("filename")
    size = None
    if root.find("size") is not None:
        try:
            size = (int(float(root.findtext("size/width"))), int(float(root.findtext("size/height"))))
        except (TypeError, ValueError) as exc:
            raise AnnotationError(f"{path}: <size> must hold numeric <width> and <height>") from exc
    boxes = []
    for i, obj in enumerate(root.findall("object")):
        name = obj.findtext("name")
        if name is None:
            raise AnnotationError(f"{path}: object[{i}] has no <name>")
        bb = obj.find("bndbox")
        if bb is None:
            raise AnnotationError(f"{path}: object[{i}] ({name}) has no <bndbox>")
        coords = [bb.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
        attrs = tuple((k, obj.findtext(k)) for k in OBJECT_FLAGS if obj.find(k) is not None)
        boxes.append(finite_box(path, f"object[{i}].bndbox", *coords, label=name, attrs=attrs))
    return filename, size, boxes


def to_xml(image_path, boxes, size=None, depth=3) -> bytes:
    root = ET.Element("annotation")
    image_path = Path(image_path)
    ET.SubElement(root, "folder").text = image_path.parent.name
    ET.SubElement(root, "filename").text = image_path.name
    if size is not None:
        s = ET.SubElement(root, "size")
        ET.SubElement(s, "width").text = str(int(size[0]))
        ET.SubElement(s, "height").text = str(int(size[1]))
        ET.SubElement(s, "depth").text = str(depth)
    for b in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = b.label
        attrs = dict(b.attrs)
        for k in OBJECT_FLAGS:
            if k in attrs or k == "difficult":
                ET.SubElement(obj, k).text = str(attrs.get(k, "0"))
        bb = ET.SubElement(obj, "bndbox")
        for k, v in zip(("xmin", "ymin", "xmax", "ymax"), b.corners()):
            ET.SubElement(bb, k).text = number_text(v)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write(path, image_path, boxes, size=None) -> None:
    atomic_write_bytes(path, to_xml(image_path, boxes, size))
