"""Writing back loses nothing the user did not change, names with dots never merge images, and
`roiscope convert` A -> B -> A gives back A's boxes."""
import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from app.convert_cli import main as convert
from app.formats import FORMATS, labelme, read_annotations, write_annotations
from app.regions import Box
from tests.app.test_real_datasets import dataset, make_image  # noqa: F401  (dataset: the fixture)


def entries_of(result):
    return [(img, boxes, result.sizes.get(img)) for img, boxes in result.boxes.items()]


@pytest.mark.parametrize("name, sidecar", [("labelme5", "2011_000003.json"), ("labelme3", "apc2016_obj3.json"),
                                           ("xanylabeling", "x_png.rf.3b7f1e2c9a.json")])
def test_labelme_untouched_write_back_is_the_same_document(dataset, name, sidecar):
    root = dataset(name)
    original = json.loads((root / sidecar).read_text(encoding="utf-8"))
    got = read_annotations(root, None)
    write_annotations("labelme", root, entries_of(got), images_root=root, overwrite=True, like=got)
    assert json.loads((root / sidecar).read_text(encoding="utf-8")) == original


def test_labelme_edits_change_only_their_shapes(dataset):
    root = dataset("labelme5")
    sidecar = root / "2011_000003.json"
    original = json.loads(sidecar.read_text())
    doc = labelme.read(sidecar, derived=True)
    person, bottle, wheel, stain, person2 = doc.boxes
    edited = [person.relabeled("pedestrian"), bottle.moved_to(70, 250, 110, 330), stain, person2, Box(1, 2, 3, 4, "new")]
    labelme.write(sidecar, root / "2011_000003.jpg", edited, doc.extra)  # the wheel circle was deleted
    shapes = json.loads(sidecar.read_text())["shapes"]
    assert [s["label"] for s in shapes] == ["pedestrian", "bottle", "nose", "horizon", "crack", "stain", "person", "new"]
    assert shapes[0]["points"] == original["shapes"][0]["points"]  # relabelled, not moved: points kept exactly
    assert shapes[0]["mask"] is None and shapes[0]["description"] == ""  # unknown keys kept
    assert shapes[1]["shape_type"] == "rectangle" and shapes[1]["points"] == [[70, 250], [110, 330]]
    assert shapes[2:5] == original["shapes"][3:6] and shapes[5] == original["shapes"][6]  # mask shape kept whole
    assert shapes[7]["shape_type"] == "rectangle" and shapes[7]["points"] == [[1, 2], [3, 4]]
    data = json.loads(sidecar.read_text())
    assert (data["imageWidth"], data["imageHeight"], data["version"]) == (500, 338, "5.4.1")


def test_labelme3_legacy_colours_and_four_point_boxes_survive_a_move(dataset):
    root = dataset("labelme3")
    sidecar = root / "apc2016_obj3.json"
    doc = labelme.read(sidecar, derived=True)
    shelf, notes, cards = doc.boxes
    labelme.write(sidecar, root / "apc2016_obj3.jpg", [shelf.moved_to(20, 30, 70, 95), notes, cards], doc.extra)
    data = json.loads(sidecar.read_text())
    assert data["lineColor"] == [0, 255, 0, 128] and data["fillColor"] == [255, 0, 0, 128]
    assert "shape_type" not in data["shapes"][0] and data["shapes"][0]["points"] == [[20, 30], [70, 30], [70, 95], [20, 95]]
    assert data["shapes"][1]["line_color"] == [0, 255, 0, 128] and len(data["shapes"][1]["points"]) == 5


def _canonical(path):
    root = ET.parse(path).getroot()
    for el in root.iter():
        el.text = (el.text or "").strip()
        el.tail = None
    return ET.tostring(root, encoding="unicode")


@pytest.mark.parametrize("name", ["voc", "cvat_voc", "labelimg"])
def test_voc_untouched_write_back_keeps_every_element(dataset, tmp_path, name):
    root = dataset(name)
    originals = {p.name: _canonical(p) for p in root.rglob("*.xml")}
    got = read_annotations(root, None)
    out = tmp_path / "out"
    written = write_annotations("voc", out, entries_of(got), images_root=root, like=got)
    assert {p.name: _canonical(p) for p in written} == originals


def test_coco_untouched_write_back_keeps_ids_categories_and_segmentations(dataset, tmp_path):
    root = dataset("cocoapi")
    (root / "instances_val2014_fakebbox100_results.json").unlink()
    original = json.loads((root / "instances_val2014_trimmed.json").read_text())
    got = read_annotations(root, None)
    write_annotations("coco", tmp_path / "again.json", entries_of(got), images_root=root, like=got)
    again = json.loads((tmp_path / "again.json").read_text())
    for key in ("info", "licenses", "images", "annotations", "categories"):
        assert again[key] == original[key], key


def test_coco_untouched_write_back_adds_no_keys(dataset, tmp_path):
    root = dataset("mmdetection")
    original = json.loads((root / "coco_sample.json").read_text())
    got = read_annotations(root / "coco_sample.json", None)
    write_annotations("coco", tmp_path / "again.json", entries_of(got), images_root=root, like=got)
    assert json.loads((tmp_path / "again.json").read_text()) == original


def test_coco_moved_box_drops_its_stale_outline_and_keeps_its_ids(dataset, tmp_path):
    root = dataset("coco_cvat")
    got = read_annotations(root, None, images_root=root / "images")
    img = root / "images/day/frame_000001.jpg"
    got.boxes[img][1] = got.boxes[img][1].moved_to(21, 5, 40, 30)
    write_annotations("coco", tmp_path / "c.json", entries_of(got), images_root=root / "images", like=got)
    data = json.loads((tmp_path / "c.json").read_text())
    bus = [a for a in data["annotations"] if a["id"] == 2][0]
    assert bus["bbox"] == [21, 5, 19, 25] and bus["segmentation"] == [] and bus["attributes"] == {"occluded": True}
    assert [c["id"] for c in data["categories"]] == [1, 3, 7]  # unused "truck" kept with its id
    assert [i["file_name"] for i in data["images"]] == ["day/frame_000001.jpg", "night/frame_000002", "night/frame_000003.jpg"]


def test_yolo_write_back_keeps_class_ids_lines_and_data_yaml(dataset):
    root = dataset("ultralytics")
    yaml_before = (root / "data.yaml").read_bytes()
    lines_before = (root / "labels/train/street_jpg.rf.5c2f0a.txt").read_text()
    got = read_annotations(root, None)
    img = root / "images/train/street_jpg.rf.5c2f0a.jpg"
    got.boxes[img].append(Box(0, 0, 32, 24, "tram"))
    write_annotations("yolo", root, entries_of(got), images_root=root, overwrite=True, like=got)
    assert (root / "data.yaml").read_bytes() == yaml_before
    lines = (root / "labels/train/street_jpg.rf.5c2f0a.txt").read_text().splitlines()
    assert "\n".join(lines[:3]) + "\n" == lines_before  # unchanged lines byte-for-byte, bus still class 5
    assert lines[3] == "6 0.25 0.25 0.5 0.5"  # a new label is appended after the largest id
    assert (root / "labels/val/lane_01.txt").read_text() == "1 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n"  # segment kept
    assert (root / "classes.txt").read_text().splitlines() == ["person", "bicycle", "car", "", "", "bus", "tram"]


@pytest.mark.parametrize("name, table", [("retinanet", "annotations.csv"), ("tf_od", "train_labels.csv")])
def test_csv_write_back_uses_the_layout_it_was_read_in(dataset, tmp_path, name, table):
    root = dataset(name)
    got = read_annotations(root / table, None)
    write_annotations("csv", tmp_path / "again.csv", entries_of(got), images_root=root, like=got)
    assert (tmp_path / "again.csv").read_text() == (root / table).read_text()


DOTTED = ["x_png.rf.aaa111.jpg", "x_png.rf.bbb222.jpg", "x.png.rf.ccc.jpg"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_names_with_dots_never_merge_and_point_at_real_files(tmp_path, fmt):
    root = tmp_path / "imgs"
    paths = [root / n for n in DOTTED]
    for p in paths:
        make_image(p, 40, 30)
    entries = [(p, [Box(i, i, 10 + i, 12 + i, f"c{i}")], None) for i, p in enumerate(paths)]
    target = tmp_path / ("out.json" if fmt == "coco" else "out.csv" if fmt == "csv" else "out")
    written = write_annotations(fmt, target, entries, images_root=root)
    got = read_annotations(target, paths, images_root=root, fmt=fmt)
    assert got.errors == []
    assert {p.name: [(b.label, b.corners()) for b in bs] for p, bs in got.boxes.items()} == {
        p.name: [(f"c{i}", pytest.approx((i, i, 10 + i, 12 + i)))] for i, p in enumerate(paths)}
    if fmt == "labelme":
        for f in written:
            assert (f.parent / json.loads(f.read_text())["imagePath"]).resolve().is_file()
    if fmt == "coco":
        assert all((root / i["file_name"]).is_file() for i in json.loads(target.read_text())["images"])


def test_two_images_that_would_share_a_file_are_refused(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "a.png"
    make_image(a, 10, 10)
    make_image(b, 10, 10)
    with pytest.raises(ValueError, match="never merged"):
        write_annotations("yolo", tmp_path / "out", [(a, [Box(0, 0, 1, 1)], None), (b, [], None)], tmp_path)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_utf8_file_names_round_trip_through_every_writer(tmp_path, fmt):
    root = tmp_path / "imgs"
    image = root / os.fsdecode(b"caf\xe9 \xff.png")
    try:
        make_image(image, 30, 20)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses non-UTF-8 names")
    box = Box(1, 2, 11, 12, "cup")
    target = tmp_path / ("out.json" if fmt == "coco" else "out.csv" if fmt == "csv" else "out")
    write_annotations(fmt, target, [(image, [box], None)], images_root=root)
    got = read_annotations(target, [image], images_root=root, fmt=fmt)
    assert got.errors == [] and [(b.label, b.corners()) for b in got.boxes[image]] == [("cup", pytest.approx((1, 2, 11, 12)))]


def test_labelme_sidecar_image_path_keeps_undecodable_bytes(tmp_path):
    image = tmp_path / os.fsdecode(b"na\xefve.png")
    labelme.write(labelme.sidecar_path(image), image, [Box(0, 0, 1, 1)])
    doc = labelme.read(labelme.sidecar_path(image))
    assert os.fsencode(doc.image_path) == b"na\xefve.png"


@pytest.mark.parametrize("name, fmt", [("labelme5", "labelme"), ("labelimg", "voc"), ("ultralytics", "yolo"),
                                       ("coco_cvat", "coco"), ("retinanet", "csv")])
@pytest.mark.parametrize("via", FORMATS)
def test_convert_a_to_b_to_a_gives_back_the_boxes(dataset, tmp_path, name, fmt, via):
    root = dataset(name)
    images = [str(root / "images")] if name == "coco_cvat" else [str(root)]
    before = read_annotations(root, None, images_root=images[0], fmt=fmt)
    assert convert([str(root), "--images", *images, "--to", via, "--out", str(tmp_path / "b")]) == 0
    assert convert([str(tmp_path / "b"), "--images", *images, "--to", fmt, "--out", str(tmp_path / "a")]) == 0
    after = read_annotations(tmp_path / "a", None, images_root=images[0], fmt=fmt)
    want = {img: [(b.label, b.corners()) for b in bs] for img, bs in before.boxes.items() if bs}
    got = {img: [(b.label, b.corners()) for b in bs] for img, bs in after.boxes.items() if bs}
    assert got.keys() == want.keys()
    for img in want:
        assert [g[0] for g in got[img]] == [w[0] for w in want[img]]
        tol = 1e-9 if "yolo" in (via, fmt) else 0  # normalized floats: exact up to rounding
        np.testing.assert_allclose([g[1] for g in got[img]], [w[1] for w in want[img]], rtol=0, atol=tol)


def test_convert_reports_problems_and_exits_1(dataset, tmp_path, capsys):
    root = dataset("labelimg")
    (root / "broken.xml").write_text("<annotation><object><name>x</name></object></annotation>")
    assert convert([str(root), "--to", "coco", "--out", str(tmp_path / "o")]) == 1
    out, err = capsys.readouterr()
    assert "3 box(es)" in out and "broken.xml" in err and "has no <bndbox>" in err
    assert len(json.loads((tmp_path / "o" / "annotations.json").read_text())["annotations"]) == 3


def test_convert_cli_is_a_roiscope_subcommand(dataset, tmp_path):
    from app.cli import main

    root = dataset("tf_od")
    assert main(["convert", str(root), "--to", "voc", "--out", str(tmp_path / "v")]) == 0
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["raccoon-1.xml", "raccoon-2.xml"]


def test_convert_extracts_an_image_that_exists_only_as_image_data(dataset, tmp_path):
    root = dataset("labelme_imagedata")
    out = tmp_path / "out"
    assert convert([str(root), "--to", "labelme", "--out", str(out)]) == 0
    image = out / "embedded_only.png"
    assert cv2_size(image) == (6, 4)
    data = json.loads((out / "embedded_only.json").read_text())
    assert (out / data["imagePath"]).resolve() == image.resolve()
    assert [s["points"] for s in data["shapes"]] == [[[1.0, 1.0], [4.0, 3.0]]]


def cv2_size(path):
    import cv2

    img = cv2.imread(str(path))
    return img.shape[1], img.shape[0]


def test_labelme_written_elsewhere_points_at_the_image(dataset, tmp_path):
    root = dataset("labelme5")
    got = read_annotations(root, None)
    out = tmp_path / "elsewhere" / "deeper"
    (written,) = write_annotations("labelme", out, entries_of(got), images_root=root, like=got)
    data = json.loads(written.read_text())
    assert (written.parent / data["imagePath"]).resolve() == (root / "2011_000003.jpg").resolve()
    assert len(data["shapes"]) == 8  # everything else kept
