"""Bad input and faults in the window: each failure is shown, nothing of another image stays on
show, no exception escapes a slot, and no box is lost."""
import json
import os
import shutil
import sys

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from app import recovery
from app.gui.qt_util import install_last_resort_handler
from tests.gui.conftest import SAMPLES, drag, wait_features


def test_a_failed_load_clears_every_panel_and_marks_the_image(qtbot, window, sample_dir):
    (sample_dir / "zz_broken.png").write_bytes(b"\x89PNG not really")
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    assert window.inspector.align_panel.image.image is not None
    window.image_list.setCurrentRow(2)
    qtbot.waitUntil(lambda: window.last_error is not None and "zz_broken.png" in window.last_error, timeout=10000)
    insp = window.inspection
    assert insp.features is None and insp.pooled == {} and window.rgb is None
    for panel in (window.inspector.align_panel, window.inspector.gallery, window.inspector.mosaic, window.inspector.channel_panel):
        assert panel.image.image is None, panel.title_text()
    assert "features" not in window.status_image.text()
    assert "unreadable" in window.image_list.item(2).text()
    window.image_list.setCurrentRow(0)  # the others still work
    wait_features(qtbot, window)
    assert window.inspection.pooled["roi_align"].shape[0] == 2


def test_a_box_beyond_float32_is_flagged_and_the_others_pool(qtbot, window, sample_dir):
    data = json.loads((sample_dir / "chelsea.json").read_text())
    data["shapes"][0]["points"][1][0] = 1e300
    (sample_dir / "chelsea.json").write_text(json.dumps(data))
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    pooled = window.inspection.pooled["roi_align"]
    assert np.isnan(pooled[0]).all() and np.isfinite(pooled[1]).all()
    table = window.inspector.table
    assert "float32" in table.item(0, table.columnCount() - 1).text() and table.item(1, table.columnCount() - 1).text() == ""
    window.inspection.select(window.current_boxes()[0].id)
    assert "cannot be pooled" in window.inspector.align_panel.title_text()


def test_clicks_and_drags_before_any_image_are_harmless(qtbot, window):
    vp = window.canvas.viewport()
    qtbot.mouseClick(vp, QtCore.Qt.MouseButton.LeftButton, pos=QtCore.QPoint(100, 100))
    drag(qtbot, window.canvas, (10, 10), (60, 60))
    qtbot.keyClick(window, QtCore.Qt.Key.Key_W)
    drag(qtbot, window.canvas, (10, 10), (60, 60))
    assert window.current_boxes() == [] and window.last_error is None


def test_draw_mode_draws_even_when_the_drag_starts_on_the_selected_box(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    first = window.current_boxes()[0]
    window.inspection.select(first.id)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_W)
    cx, cy = (first.x1 + first.x2) / 2, (first.y1 + first.y2) / 2
    drag(qtbot, window.canvas, (cx, cy), (cx + 40, cy + 30))
    boxes = window.current_boxes()
    assert len(boxes) == 3 and boxes[0] == first
    assert abs(boxes[-1].x1 - cx) < 3 and abs(boxes[-1].y2 - (cy + 30)) < 3


def test_a_new_box_offers_recent_labels_and_undo_clears_the_label_field(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_W)
    drag(qtbot, window.canvas, (20, 150), (120, 260))
    picker = window.label_picker
    assert picker.isVisible() and picker.edit.text() == "object"
    picker.edit.setText("whisker")
    qtbot.keyClick(picker.edit, QtCore.Qt.Key.Key_Return)
    assert not picker.isVisible() and window.current_boxes()[-1].label == "whisker"
    drag(qtbot, window.canvas, (30, 160), (90, 220))
    assert len(window.current_boxes()) == 4
    assert window.current_boxes()[-1].label == "whisker"  # the recent label is the default
    assert picker.isVisible() and "whisker" in [b.text() for b in picker.findChildren(QtWidgets.QPushButton)]
    qtbot.keyClick(picker, QtCore.Qt.Key.Key_Escape)
    assert window.inspector.label_edit.text() == "whisker"
    window.undo_stack.undo()  # removes the selected new box
    assert window.inspection.selected == -1 and window.inspector.label_edit.text() == ""


def test_an_extractor_that_fails_to_load_leaves_the_previous_one_in_use(qtbot, window, sample_dir, monkeypatch):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    real = window.extractors.get

    def offline(name):
        if name == "vgg16":
            raise RuntimeError("Could not load ImageNet weights for VGG16 (offline)")
        return real(name)

    monkeypatch.setattr(window.extractors, "get", offline)
    window.settings_bar.extractor_combo.setCurrentText("vgg16")
    assert "VGG16" in window.last_error
    assert window.settings_bar.extractor_combo.currentText() == "filters"
    assert window.inspection.settings.extractor == "filters" and window.inspection.features is not None


def test_a_malformed_import_that_raises_is_named_in_the_banner(qtbot, window, sample_dir, tmp_path, monkeypatch):
    import app.gui.io_dialogs as io_dialogs

    window.open_paths([sample_dir])

    def broken(*args, **kwargs):
        raise TypeError("'int' object is not iterable")

    monkeypatch.setattr(io_dialogs, "read_annotations", broken)
    assert window.io.import_annotations(tmp_path / "coco.json") == 0
    assert "coco.json" in window.last_error and "not iterable" in window.last_error


@pytest.mark.qt_no_exception_capture
def test_the_last_resort_handler_shows_the_banner_and_keeps_the_journal(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    previous = install_last_resort_handler(window.report_unexpected)
    try:
        window.duplicate_selected()  # an unsaved edit
        window.autosave_timer.stop()

        def slot():
            raise KeyError("boom in a slot")

        QtCore.QTimer.singleShot(0, slot)
        qtbot.waitUntil(lambda: window.last_error is not None, timeout=3000)
    finally:
        sys.excepthook = previous
    assert "boom in a slot" in window.last_error and window.banner.isVisible()
    journal = recovery.read()
    assert journal is not None and len(next(iter(journal[1].values()))) == 3


def test_non_utf8_file_names_survive_journal_and_save(qtbot, window, tmp_path):
    if sys.platform != "linux":
        pytest.skip("file names of arbitrary bytes are a POSIX thing")
    name = os.fsdecode(b"caf\xe9_chat.png")  # Latin-1 bytes: not UTF-8
    shutil.copy(SAMPLES / "chelsea.png", tmp_path / name)
    window.open_paths([tmp_path])
    wait_features(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_W)
    drag(qtbot, window.canvas, (20, 150), (120, 260))
    window.autosave_timer.stop()
    journal = recovery.read()
    assert journal is not None and [p.name for p in map(__import__("pathlib").Path, journal[1])] == [name]
    window.saving.autosave()
    assert window.last_error is None
    from app.formats import labelme

    saved = labelme.read((tmp_path / name).with_suffix(".json"))
    assert [b.label for b in saved.boxes] == ["object"] and saved.image_path == name
    assert recovery.read() is None  # everything saved: the journal is gone
    assert "\ufffd" in window.windowTitle()  # shown with a replacement character, not an error
