"""The document model and labelme sidecars, without Qt."""
import json
import sys

import numpy as np
import pytest

from app.formats import labelme
from app.images import ImageReadError, capped_for_extraction, read_image
from app.project import Box, ImageDoc, Project


def test_box_orders_corners_and_rejects_nan():
    b = Box.from_corners(10, 20, 2, 4, "cat")
    assert b.corners() == (2, 4, 10, 20)
    with pytest.raises(ValueError, match="finite"):
        Box.from_corners(0, float("nan"), 1, 1)


def test_box_flags():
    assert Box(3, 3, 3, 5).flags(10, 10) == ["zero-area"]
    assert Box(20, 20, 30, 30).flags(10, 10) == ["outside-image"]
    assert Box(-2, 0, 5, 5).flags(10, 10) == ["partly-outside"]
    assert Box(1, 1, 5, 5).flags(10, 10) == []


def test_doc_ids_are_unique_and_edits_mark_dirty(tmp_path):
    doc = ImageDoc(tmp_path / "a.png", loaded=True)
    a = doc.add(Box(0, 0, 1, 1))
    b = doc.add(Box(0, 0, 2, 2))
    assert a.id != b.id and doc.dirty
    idx, removed = doc.remove(a.id)
    assert idx == 0 and removed == a
    doc.add(removed, index=0)
    assert [x.id for x in doc.boxes] == [a.id, b.id]


def test_sidecar_round_trip_keeps_other_shapes_and_unicode(tmp_path):
    img = tmp_path / "img.png"
    sidecar = tmp_path / "img.json"
    sidecar.write_text(json.dumps({
        "version": "5.0.1", "flags": {"reviewed": True}, "imagePath": "img.png", "imageData": None,
        "shapes": [
            {"label": "chat noir é", "points": [[30.5, 40.25], [10, 12]], "shape_type": "rectangle"},
            {"label": "outline", "points": [[1, 1], [5, 1], [5, 5]], "shape_type": "polygon"},
        ],
    }), encoding="utf-8")
    doc = ImageDoc(img)
    doc.load()
    # The polygon is a region by its bounding box, marked as derived (issue 9), and written back
    # as the polygon it was.
    assert [(b.label, b.corners()) for b in doc.boxes] == [("chat noir é", (10, 12, 30.5, 40.25)), ("outline", (1, 1, 5, 5))]
    assert doc.boxes[1].attr("derived_from") == "polygon"
    doc.add(Box(1, 2, 3, 4, "new one"))
    doc.save((64, 48))
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    assert data["flags"] == {"reviewed": True}
    assert [s["shape_type"] for s in data["shapes"]] == ["rectangle", "polygon", "rectangle"]
    assert data["shapes"][1]["points"] == [[1, 1], [5, 1], [5, 5]]  # untouched: written back as it was
    assert data["imageWidth"] == 64
    again = ImageDoc(img)
    again.load()
    assert [b.label for b in again.boxes] == ["chat noir é", "outline", "new one"]


@pytest.mark.parametrize("content, match", [
    ("{ nope", "not valid JSON"),
    ('{"shapes": 3}', "'shapes' must be a list"),
    ('{"shapes": [{"shape_type": "rectangle", "points": [[1, 2]]}]}', r"shapes\[0\].points"),
    ('{"shapes": [{"shape_type": "rectangle", "points": [[1, NaN], [2, 3]]}]}', "finite"),
])
def test_broken_sidecar_is_reported_and_not_overwritten(tmp_path, content, match):
    (tmp_path / "x.json").write_text(content)
    doc = ImageDoc(tmp_path / "x.png")
    doc.load()
    assert doc.boxes == [] and "x.json" in doc.load_error
    with pytest.raises(ValueError, match="not saving over"):
        doc.save()
    assert (tmp_path / "x.json").read_text() == content
    with pytest.raises(ValueError, match=match):
        labelme.read(tmp_path / "x.json")


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    doc = ImageDoc(tmp_path / "a.png", loaded=True)
    doc.add(Box(0, 0, 5, 5))
    doc.save()
    before = (tmp_path / "a.json").read_text()
    doc.add(Box(1, 1, 2, 2))
    import os

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        doc.save()
    assert (tmp_path / "a.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left behind
    assert doc.dirty  # the edit is still in memory


def test_project_lists_images_and_steps(tmp_path):
    import cv2

    for name in ("b.png", "a.jpg", "notes.txt"):
        if name.endswith((".png", ".jpg")):
            cv2.imwrite(str(tmp_path / name), np.zeros((4, 4, 3), np.uint8))
        else:
            (tmp_path / name).write_text("x")
    p = Project()
    assert [d.path.name for d in p.open([tmp_path])] == ["a.jpg", "b.png"]
    assert p.step(1).path.name == "b.png"
    assert p.step(5).path.name == "b.png"


def test_read_image_variants(tmp_path):
    import cv2

    gray16 = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    img = read_image(tmp_path / "g16.png")
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8 and img.max() > 200
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 2] = 255  # BGRA: red
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert tuple(read_image(tmp_path / "rgba.png")[0, 0]) == (255, 0, 0)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        read_image(tmp_path / "bad.jpg")


def test_extraction_copy_is_capped_and_scale_tracked():
    big = np.zeros((6000, 8000, 3), np.uint8)
    small, factor = capped_for_extraction(big, 2048)
    assert max(small.shape[:2]) == 2048 and factor == pytest.approx(8000 / 2048)


def test_export_path_imports_no_qt():
    import subprocess

    code = "import sys, app.project, app.pooling, app.formats.labelme, app.cli; sys.exit('PySide6' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_preflight_names_the_missing_qt_package(monkeypatch, capsys):
    import app.gui.preflight as preflight

    monkeypatch.setattr(preflight.sys, "platform", "linux")
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(preflight.ctypes.util, "find_library", lambda name: None if name == "xcb-cursor" else "lib")
    assert preflight.main() == 0
    err = capsys.readouterr().err
    assert "sudo apt-get install libxcb-cursor0" in err and "libegl1" not in err
