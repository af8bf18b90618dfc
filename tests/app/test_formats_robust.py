"""Bad files are named with their reason and never cost the other files; YOLO coordinates refer
to the image as displayed (EXIF orientation); the summary says what happened."""
import json
import struct

import cv2
import numpy as np
import pytest

from app.formats import read_annotations
from app.formats.registry import FORMATS_TABLE
from tests.app.test_real_datasets import make_image


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "ds"
    make_image(root / "a.png", 40, 30)
    make_image(root / "b.png", 40, 30)
    (root / "b.json").write_text(json.dumps({"shapes": [{"label": "ok", "points": [[1, 1], [5, 5]], "shape_type": "rectangle"}],
                                             "imagePath": "b.png"}))
    return root


@pytest.mark.parametrize("name, content, reason", [
    ("a.json", b'{"shapes": [], "imagePath": "caf\xe9.png"}', "cannot read"),  # latin-1 bytes: UnicodeDecodeError
    ("c.json", json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": [1], "bbox": [0, 0, 1, 1]}]}).encode(), "image_id"),
    ("c.json", json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [], "categories": 5}).encode(), "categories"),
    ("c.json", json.dumps({"images": [[1]], "annotations": []}).encode(), r"images\[0\]"),
    ("c.json", json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1, "bbox": [0, 0, 1, 1], "category_id": {"x": 1}}],
                           "categories": []}).encode(), "."),
    ("a.json", json.dumps({"shapes": [{"label": ["x"], "points": [[0, "a"], [1, 1]], "shape_type": "rectangle"}]}).encode(), "shapes"),
    ("a.json", json.dumps({"shapes": "nope"}).encode(), "'shapes' must be a list"),
    ("a.xml", b"<annotation><object><name>x</name><bndbox><xmin>1</xmin></bndbox></object>", "not valid XML"),
    ("a.txt", b"0 0.5 0.5 0.1\n", "line 1"),
    ("a.txt", b"\xff\xfe0 0.5\n", "cannot read"),
    ("a.csv", b"image,label,x1,y1,x2,y2\na.png,cat,1,2,3\n", "line 2: expected 6 fields"),
])
def test_a_bad_file_is_named_and_the_others_are_still_read(folder, name, content, reason):
    (folder / name).write_bytes(content)
    if name.endswith(".txt"):
        (folder / "classes.txt").write_text("cat\n")
    fmt = {".json": None, ".xml": "voc", ".txt": "yolo", ".csv": "csv"}[name[-5:][name[-5:].index("."):]]
    single = read_annotations(folder / name, None, fmt=fmt)
    assert single.boxes.get(folder / "a.png", []) == []
    assert len(single.errors) == 1 and name in single.errors[0]
    import re

    assert re.search(reason, single.errors[0]), single.errors[0]
    assert "Traceback" not in single.summary_text() and "refused" in single.summary_text()
    whole = read_annotations(folder, None)
    assert [b.label for b in whole.boxes[folder / "b.png"]] == ["ok"]  # the good file still counts
    assert any(name in e for e in whole.errors)


def test_coordinates_beyond_float32_are_kept_and_named(folder):
    (folder / "a.json").write_text(json.dumps({"shapes": [
        {"label": "huge", "points": [[0, 0], [1e300, 5]], "shape_type": "rectangle"},
        {"label": "fine", "points": [[0, 0], [3, 5]], "shape_type": "rectangle"}], "imagePath": "a.png"}))
    got = read_annotations(folder / "a.json", None)
    huge, fine = got.boxes[folder / "a.png"]
    assert huge.x2 == 1e300 and huge.problem() and fine.problem() is None
    assert got.errors == []
    assert "shapes[0] of a.json: coordinates beyond float32" in got.summary_text()


def test_summary_lists_files_boxes_derived_skipped_and_refused(folder):
    (folder / "a.json").write_text(json.dumps({"shapes": [
        {"label": "r", "points": [[0, 0], [4, 4]], "shape_type": "rectangle"},
        {"label": "p", "points": [[0, 0], [4, 0], [2, 3]], "shape_type": "polygon"},
        {"label": "k", "points": [[1, 1]], "shape_type": "point"}], "imagePath": "a.png"}))
    (folder / "z.xml").write_text("<annotations/>")  # CVAT-for-images XML: not VOC, not read
    (folder / "y.json").write_text("{not json")
    got = read_annotations(folder, None)
    text = got.summary_text()
    lines = text.splitlines()
    assert lines[0].startswith("Imported 3 box(es) for 2 image(s) from 2 of 3 file(s); 1 derived from other shapes, "
                               "1 shape(s) skipped, 1 file(s) refused.")
    assert any("a.json [labelme]: 2 boxes, 1 derived from other shapes, 1 skipped" in line for line in lines)
    assert any("y.json [labelme]: refused: not valid JSON (line 1" in line for line in lines)
    assert "shapes[2] (point 'k'): not a region" in text and "1 file(s) not read (not annotations): z.xml" in text


def _exif_jpeg(path, w, h, orientation):
    """A w x h JPEG (as stored) carrying EXIF orientation ``orientation``."""
    ok, buf = cv2.imencode(".jpg", np.full((h, w, 3), 100, np.uint8))
    data = buf.tobytes()
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + b"\x00\x00\x00\x00"
    app1 = b"Exif\x00\x00" + tiff
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_yolo_coordinates_refer_to_the_image_as_displayed(tmp_path, orientation):
    """Stored 40 wide x 20 high; orientations 5-8 display it 20 x 40 (Ultralytics normalizes by
    the displayed size, exif_size)."""
    _exif_jpeg(tmp_path / "rot.jpg", 40, 20, orientation)
    (tmp_path / "classes.txt").write_text("thing\n")
    (tmp_path / "rot.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    got = read_annotations(tmp_path / "rot.txt", None)
    dw, dh = (20, 40) if orientation >= 5 else (40, 20)
    (box,) = got.boxes[tmp_path / "rot.jpg"]
    assert box.corners() == (dw / 4, dh / 4, 3 * dw / 4, 3 * dh / 4)


def test_registry_is_one_table_with_read_and_detect_for_every_format():
    assert list(FORMATS_TABLE) == ["labelme", "voc", "yolo", "coco", "csv"]
    for name, entry in FORMATS_TABLE.items():
        assert entry.name == name and callable(entry.detect) and callable(entry.read) and entry.module is not None


def test_reading_a_missing_path_or_unknown_format_is_an_error_not_an_exception(tmp_path):
    assert "no such file" in read_annotations(tmp_path / "nope.json", []).errors[0]
    assert "unknown annotation format" in read_annotations(tmp_path, [], fmt=None).errors[0] or \
        "no annotation files" in read_annotations(tmp_path, []).errors[0]
    (tmp_path / "x.bin").write_text("a: 1")
    assert "unknown annotation format" in read_annotations(tmp_path / "x.bin", []).errors[0]
    assert "format must be one of" in read_annotations(tmp_path, [], fmt="pascal").errors[0]


def test_any_exception_from_one_file_is_named_and_the_run_goes_on(folder, monkeypatch):
    import app.formats.reading as reading

    real = reading.labelme.read

    def flaky(path, derived=False):
        if path.name == "a.json":
            raise RuntimeError("disk hiccup")
        return real(path, derived)

    monkeypatch.setattr(reading.labelme, "read", flaky)
    (folder / "a.json").write_text(json.dumps({"shapes": [], "imagePath": "a.png"}))
    got = read_annotations(folder, None)
    assert [b.label for b in got.boxes[folder / "b.png"]] == ["ok"]
    assert len(got.errors) == 1 and "a.json" in got.errors[0] and "RuntimeError: disk hiccup" in got.errors[0]


def test_summary_of_a_large_import_stays_readable(tmp_path):
    for i in range(60):
        make_image(tmp_path / f"im{i}.png", 8, 8)
        (tmp_path / f"im{i}.json").write_text(json.dumps({"shapes": [{"label": "x", "points": [[0, 0], [1, 1]],
                                                                         "shape_type": "rectangle"}]}))
    text = read_annotations(tmp_path, None).summary_text()
    assert text.startswith("Imported 60 box(es) for 60 image(s) from 60 of 60 file(s)")
    assert "... and 10 more file(s)" in text and len(text.splitlines()) == 52


def test_a_malformed_polygon_is_skipped_with_its_reason_and_kept_on_write_back(folder):
    from app.formats import labelme

    shapes = [{"label": "bad", "points": [[0, None], [1, 1], [2, 0]], "shape_type": "polygon"},
              {"label": "ok", "points": [[0, 0], [2, 2]], "shape_type": "rectangle"}]
    (folder / "a.json").write_text(json.dumps({"shapes": shapes, "imagePath": "a.png"}))
    got = read_annotations(folder / "a.json", None)
    assert [b.label for b in got.boxes[folder / "a.png"]] == ["ok"] and got.errors == []
    assert "shapes[0] (polygon 'bad'): shapes[0].points" in got.files[0].skipped[0]
    doc = labelme.read(folder / "a.json", derived=True)
    labelme.write(folder / "a.json", folder / "a.png", doc.boxes, doc.extra)
    assert json.loads((folder / "a.json").read_text())["shapes"] == shapes


def test_an_image_annotated_by_two_files_is_merged_and_the_summary_says_so(folder):
    (folder / "more").mkdir()
    (folder / "more" / "b.json").write_text(json.dumps({"shapes": [{"label": "two", "points": [[0, 0], [2, 2]],
                                                                     "shape_type": "rectangle"}], "imagePath": "../b.png"}))
    got = read_annotations(folder, None)
    assert [b.label for b in got.boxes[folder / "b.png"]] == ["ok", "two"]
    assert "1 image(s) got boxes from more than one file (merged)" in got.summary_text()


def test_a_latin1_csv_is_read_with_a_warning_and_written_back_byte_for_byte(folder, tmp_path):
    from app.formats import write_annotations

    raw = b"image,label,x1,y1,x2,y2\na.png,caf\xe9,1,2,3,4\n"
    (folder / "t.csv").write_bytes(raw)
    got = read_annotations(folder / "t.csv", None)
    assert got.errors == [] and len(got.boxes[folder / "a.png"]) == 1
    assert "t.csv: not UTF-8 (invalid continuation byte at byte 33)" in got.summary_text()
    write_annotations("csv", tmp_path / "back.csv", [(folder / "a.png", got.boxes[folder / "a.png"], None)], folder, like=got)
    assert (tmp_path / "back.csv").read_bytes() == raw
