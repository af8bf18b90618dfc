"""Annotation formats: per-format round trips and real-world-shaped fixtures, without Qt."""
import json

import cv2
import numpy as np
import pytest

from app.formats import AnnotationError, detect_format, read_annotations, write_annotations
from app.regions import Box


@pytest.fixture
def images(tmp_path):
    """Three images, one in a subfolder, one with a non-ASCII name."""
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    paths = [root / "a.png", root / "sub" / "b.png", root / "ç é.png"]
    for i, p in enumerate(paths):
        cv2.imencode(".png", np.full((40 + i, 60 + i, 3), 90, np.uint8))[1].tofile(str(p))
    return root, paths


BOXES = [
    Box(1.5, 2.25, 30.75, 20.125, "chat noir"),
    Box(0, 0, 10, 10, "Zebra crossing ü"),
    Box(5, 6, 5.5, 39.0, "chat noir"),
]


def _entries(paths):
    return [(paths[0], BOXES[:2], None), (paths[1], [BOXES[2]], None), (paths[2], [], None)]


@pytest.mark.parametrize("fmt, target", [("labelme", "out"), ("voc", "out"), ("yolo", "out"), ("coco", "ann.json"), ("csv", "ann.csv")])
def test_round_trip(images, tmp_path, fmt, target):
    root, paths = images
    write_annotations(fmt, tmp_path / target, _entries(paths), images_root=root)
    got = read_annotations(tmp_path / target, paths, images_root=root)
    assert got.errors == []
    want = {paths[0]: BOXES[:2], paths[1]: [BOXES[2]]}
    for image, boxes in want.items():
        read = got.boxes[image]
        assert [b.label for b in read] == [b.label for b in boxes]
        tol = 1e-9 if fmt != "yolo" else 1e-6  # YOLO stores relative floats
        for r, w in zip(read, boxes):
            np.testing.assert_allclose(r.corners(), w.corners(), rtol=0, atol=tol)
    assert not got.boxes.get(paths[2])


def test_detect_format(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"images": [], "annotations": []}))
    (tmp_path / "l.json").write_text(json.dumps({"shapes": []}))
    assert detect_format(tmp_path / "c.json") == "coco"
    assert detect_format(tmp_path / "l.json") == "labelme"
    assert detect_format(tmp_path / "x.xml") == "voc"
    with pytest.raises(AnnotationError, match="unknown annotation format"):
        detect_format(tmp_path / "x.yaml")


def test_labelme_with_polygons_keeps_them_and_shape_keys(images, tmp_path):
    root, paths = images
    sidecar = root / "a.json"
    sidecar.write_text(json.dumps({
        "version": "5.2.1", "flags": {}, "imagePath": "a.png", "imageData": None,
        "shapes": [
            {"label": "road", "points": [[0, 0], [10, 0], [10, 10]], "shape_type": "polygon", "group_id": None, "flags": {}},
            {"label": "car", "points": [[12, 3], [2, 9]], "shape_type": "rectangle", "group_id": 4, "flags": {"occluded": True}},
            {"label": "pole", "points": [[1, 1]], "shape_type": "point"},
        ],
    }))
    got = read_annotations(sidecar, paths, root)
    road, car = got.boxes[paths[0]]  # the polygon is a region by its bounding box, marked derived
    assert road.corners() == (0, 0, 10, 10) and road.attr("derived_from") == "polygon" and road.label == "road"
    assert car.corners() == (2, 3, 12, 9) and car.attr("group_id") == "4" and car.attr("derived_from") is None
    assert got.files[0].boxes == 2 and got.files[0].derived == 1 and "point 'pole'" in got.files[0].skipped[0]
    from app.project import ImageDoc

    doc = ImageDoc(paths[0])
    doc.load()
    doc.save()
    data = json.loads(sidecar.read_text())
    assert [s["shape_type"] for s in data["shapes"]] == ["polygon", "rectangle", "point"]  # order kept
    assert data["shapes"][0]["points"] == [[0, 0], [10, 0], [10, 10]]
    assert data["shapes"][1]["group_id"] == 4 and data["shapes"][1]["flags"] == {"occluded": True}


COCO = {
    "images": [
        {"id": 7, "file_name": "a.png", "width": 60, "height": 40},
        {"id": 9, "file_name": "sub/b.png", "width": 61, "height": 41},
        {"id": 11, "file_name": "elsewhere/missing.png", "width": 5, "height": 5},
    ],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 2, 10, 5], "area": 50, "iscrowd": 0},
        {"id": 2, "image_id": 9, "category_id": 1, "bbox": [0.5, 0.5, 4, 4], "area": 16, "iscrowd": 1},
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [20, 20, 3, 3], "area": 9, "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "traffic light"}],
}


def test_coco_several_images_and_categories(images, tmp_path):
    root, paths = images
    (tmp_path / "coco.json").write_text(json.dumps(COCO))
    got = read_annotations(tmp_path / "coco.json", paths, root)
    assert [(b.label, b.corners()) for b in got.boxes[paths[0]]] == [("traffic light", (1, 2, 11, 7)), ("person", (20, 20, 23, 23))]
    assert got.boxes[paths[1]][0].attr("iscrowd") == "1"
    assert got.sizes[paths[1]] == (61, 41)
    assert len(got.errors) == 1 and "missing.png" in got.errors[0]  # named, not silently dropped


VOC = """<annotation><folder>imgs</folder><filename>a.png</filename>
<size><width>60</width><height>40</height><depth>3</depth></size>
<object><name>dog</name><pose>Left</pose><truncated>1</truncated><difficult>1</difficult>
<bndbox><xmin>3</xmin><ymin>4</ymin><xmax>30</xmax><ymax>22</ymax></bndbox></object>
<object><name>cat</name><difficult>0</difficult>
<bndbox><xmin>1.5</xmin><ymin>2</ymin><xmax>9</xmax><ymax>9.5</ymax></bndbox></object>
</annotation>"""


def test_voc_difficult_flags_survive_a_round_trip(images, tmp_path):
    root, paths = images
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "a.xml").write_text(VOC)
    got = read_annotations(tmp_path / "voc", paths, root)
    dog, cat = got.boxes[paths[0]]
    assert dog.attr("difficult") == "1" and dog.attr("pose") == "Left" and cat.attr("difficult") == "0"
    write_annotations("voc", tmp_path / "again", [(paths[0], [dog, cat], (60, 40))], root)
    again = read_annotations(tmp_path / "again", paths, root).boxes[paths[0]]
    assert again == [dog, cat]


@pytest.mark.parametrize("name, content, match", [
    ("bad.xml", "<annotation><object><name>x</name></object></annotation>", r"object\[0\] \(x\) has no <bndbox>"),
    ("bad.xml", "<annotation><object><name>x</name><bndbox><xmin>a</xmin></bndbox></object></annotation>", "coordinates must be numbers"),
    ("bad.csv", "image,label,x1,y1,x2,y2\na.png,cat,1,2,3\n", "line 2: expected 6 fields"),
    ("bad.csv", "image,label,x1,y1,x2,y2\na.png,cat,1,2,nan,4\n", "line 2: coordinates must be finite"),
    ("bad.csv", "img,lbl\n", "line 1: header"),
    ("coco.json", json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 2, "bbox": [0, 0, 1, 1]}]}), r"annotations\[0\].image_id 2"),
    ("coco.json", json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1, "bbox": [0, 0, 1]}]}), r"annotations\[0\].bbox"),
    ("a.json", '{"shapes": [{"shape_type": "rectangle", "points": [[0, 0]]}]}', r"shapes\[0\].points"),
])
def test_malformed_files_import_nothing_and_name_the_place(images, tmp_path, name, content, match):
    root, paths = images
    f = tmp_path / name
    f.write_text(content)
    got = read_annotations(f, paths, root)
    assert got.boxes == {}
    assert len(got.errors) == 1 and name in got.errors[0]
    import re

    assert re.search(match, got.errors[0]), got.errors[0]


def test_yolo_errors_name_the_line(images, tmp_path):
    root, paths = images
    d = tmp_path / "yolo"
    d.mkdir()
    (d / "classes.txt").write_text("cat\n")
    (d / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.1 0.1\n")
    got = read_annotations(d, paths, root)
    assert got.boxes == {} and "a.txt: line 2: class 3" in got.errors[0]


def test_writing_does_not_silently_replace_files(images, tmp_path):
    root, paths = images
    write_annotations("csv", tmp_path / "a.csv", _entries(paths), root)
    with pytest.raises(FileExistsError, match="a.csv"):
        write_annotations("csv", tmp_path / "a.csv", _entries(paths), root)
    write_annotations("csv", tmp_path / "a.csv", _entries(paths), root, overwrite=True)
