"""Pascal VOC XML, one file per image, as LabelImg, CVAT, Roboflow and the VOC devkit write it:
float coordinates, missing ``<size>``/``<depth>``, ``<part>``, ``<actions>``, ``<occluded>``,
``<attributes>``, Windows ``<path>``, ``verified="yes"``. Coordinates are taken as written (no
1-based shift). Each box keeps its original ``<object>`` element so write-back changes only
what the user changed; the rest of the file is kept by ``read_document``."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from app.atomic import atomic_write_bytes
from app.formats.common import (AnnotationError, FLOAT32_NOTE, finite_box, number_text, printable,
                                unchanged)

OBJECT_FLAGS = ("pose", "truncated", "difficult", "occluded")
COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class VocDoc:
    filename: str | None = None
    path: str | None = None
    size: tuple | None = None
    boxes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    xml: str = ""  # the file without its objects, for write-back


def detect(path) -> bool:
    try:
        for _, elem in ET.iterparse(path, events=("start",)):
            return elem.tag == "annotation"
    except (ET.ParseError, OSError, ValueError):
        return False
    return False


def read_document(path) -> VocDoc:
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError, ValueError) as exc:
        raise AnnotationError(f"{path}: not valid XML ({exc})") from exc
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: root element must be <annotation>, got <{root.tag}>")
    try:
        return _read(path, root)
    except AnnotationError:
        raise
    except Exception as exc:
        raise AnnotationError(f"{path}: malformed VOC file ({type(exc).__name__}: {exc})") from exc


def _read(path, root) -> VocDoc:
    doc = VocDoc(filename=(root.findtext("filename") or "").strip() or None, path=(root.findtext("path") or "").strip() or None)
    if root.find("size") is not None and (root.findtext("size/width") or "").strip():
        try:
            doc.size = (int(float(root.findtext("size/width"))), int(float(root.findtext("size/height"))))
        except (TypeError, ValueError) as exc:
            raise AnnotationError(f"{path}: <size> must hold numeric <width> and <height>") from exc
        if min(doc.size) <= 0:
            doc.size = None  # some exporters write 0 x 0 when they did not know
    for i, obj in enumerate(root.findall("object")):
        name = obj.findtext("name")
        if name is None:
            raise AnnotationError(f"{path}: object[{i}] has no <name>")
        bb = obj.find("bndbox")
        if bb is None:
            raise AnnotationError(f"{path}: object[{i}] ({name}) has no <bndbox>")
        coords = [bb.findtext(k) for k in COORDS]
        attrs = [(k, (obj.findtext(k) or "").strip()) for k in OBJECT_FLAGS if obj.find(k) is not None]
        attrs.append(("voc_object", _canonical(obj)))
        box = finite_box(path, f"object[{i}].bndbox", *coords, label=name.strip(), attrs=attrs)
        if box.problem():
            doc.warnings.append(f"object[{i}] of {path.name}: {FLOAT32_NOTE}")
        doc.boxes.append(box)
    for obj in root.findall("object"):
        root.remove(obj)
    doc.xml = ET.tostring(root, encoding="unicode")
    return doc


def _canonical(elem) -> str:
    """The element as text without layout whitespace, so it reads back equal after a write."""
    elem = ET.fromstring(ET.tostring(elem, encoding="unicode"))
    for el in elem.iter():
        el.text = el.text.strip() if el.text and el.text.strip() else (None if len(el) else el.text and el.text.strip())
        el.tail = None
    return ET.tostring(elem, encoding="unicode")


def read(path):
    """-> (image file name or None, (w, h) or None, boxes)."""
    doc = read_document(path)
    return doc.filename, doc.size, doc.boxes


def _object(b):
    """The box's original <object> with its name (and, when moved, its corners) updated."""
    src = b.attr("voc_object")
    obj = ET.fromstring(src) if src else None
    if obj is None:
        obj = ET.Element("object")
        ET.SubElement(obj, "name")
        attrs = dict(b.attrs)
        for k in OBJECT_FLAGS:
            if k in attrs or k == "difficult":
                ET.SubElement(obj, k).text = printable(attrs.get(k, "0"))
        ET.SubElement(obj, "bndbox")
    obj.find("name").text = printable(b.label)
    if not (src and unchanged(b)):
        bb = obj.find("bndbox")
        for k, v in zip(COORDS, b.corners()):
            el = bb.find(k)
            if el is None:
                el = ET.SubElement(bb, k)
            el.text = number_text(v)
    return obj


def to_xml(image_path, boxes, size=None, depth=3, original=None) -> bytes:
    """``original``: the file read before (``VocDoc.xml``), whose other elements are kept."""
    image_path = Path(image_path)
    if original:
        root = ET.fromstring(original)
    else:
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = printable(image_path.parent.name)
        ET.SubElement(root, "filename").text = printable(image_path.name)
        if size is not None:
            s = ET.SubElement(root, "size")
            ET.SubElement(s, "width").text = str(int(size[0]))
            ET.SubElement(s, "height").text = str(int(size[1]))
            ET.SubElement(s, "depth").text = str(depth)
    for b in boxes:
        root.append(_object(b))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write(path, image_path, boxes, size=None, original=None) -> None:
    atomic_write_bytes(path, to_xml(image_path, boxes, size, original=original))
