import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PySide6 import QtCore

from app import recovery
from tests.gui.conftest import wait_features


def test_import_is_one_undo_step_across_images(qtbot, window, sample_dir, tmp_path):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    before = {d.path.name: len(d.boxes) for d in window.project.images}
    csv_file = tmp_path / "more.csv"
    csv_file.write_text("image,label,x1,y1,x2,y2\nchelsea.png,whisker,1,2,30,40\ncoffee.png,spoon,5,5,50,60\ncoffee.png,bean,7,7,9,9\n")
    assert window.io.import_annotations(csv_file) == 3
    after = {d.path.name: len(d.boxes) for d in window.project.images}
    assert after == {"chelsea.png": before["chelsea.png"] + 1, "coffee.png": before["coffee.png"] + 2}
    assert window.inspection.pooled["roi_align"].shape[0] == after["chelsea.png"]
    window.undo_stack.undo()
    assert {d.path.name: len(d.boxes) for d in window.project.images} == before
    window.undo_stack.redo()
    assert {d.path.name: len(d.boxes) for d in window.project.images} == after


def test_malformed_import_shows_error_and_imports_nothing(qtbot, window, sample_dir, tmp_path):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    before = [len(d.boxes) for d in window.project.images]
    bad = tmp_path / "bad.csv"
    bad.write_text("image,label,x1,y1,x2,y2\nchelsea.png,ok,1,2,3,4\ncoffee.png,broken,1,2,nan,4\n")
    assert window.io.import_annotations(bad) == 0
    assert "bad.csv: line 3" in window.last_error and window.banner.isVisible()
    assert [len(d.boxes) for d in window.project.images] == before
    assert window.undo_stack.count() == 0


def test_gui_export_matches_the_pooled_grids_shown(qtbot, window, sample_dir, tmp_path):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    window.settings_bar.op_combo.setCurrentText("RoIPool")
    window.settings_bar.size_spin.setValue(5)
    shown = window.inspection.pooled["roi_pool"].copy()
    with qtbot.waitSignal(window.io.export_finished, timeout=60000):
        window.io.export_regions(tmp_path / "out")
    assert window.io.last_export.regions == 4
    table = pq.read_table(tmp_path / "out" / "embeddings.parquet").to_pandas()
    mine = table[table["image"].str.endswith("chelsea.png")]
    assert list(mine["op"]) == ["roi_pool"] * len(shown)
    for (_, row), grid in zip(mine.iterrows(), shown):
        np.testing.assert_array_equal(np.asarray(row["embedding"], np.float32).reshape(grid.shape), grid)
    assert len(list((tmp_path / "out" / "crops").glob("*.png"))) == 4


def test_export_annotations_refuses_to_overwrite(qtbot, window, sample_dir, tmp_path):
    window.open_paths([sample_dir])
    written = window.io.export_annotations("coco", tmp_path / "all.json")
    data = json.loads(written[0].read_text())
    assert len(data["images"]) == 2 and len(data["annotations"]) == 4
    with pytest.raises(FileExistsError):
        window.io.export_annotations("coco", tmp_path / "all.json")




def test_write_error_keeps_work_and_journal(qtbot, window, sample_dir, monkeypatch):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    import app.formats.labelme as lm

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lm, "atomic_write_text", disk_full)
    window.duplicate_selected()
    n = len(window.current_boxes())
    qtbot.keyClick(window, QtCore.Qt.Key.Key_S, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert "No space left" in window.last_error
    assert len(window.current_boxes()) == n and window.project.doc().dirty
    journal = recovery.read()
    assert journal is not None and len(journal[1][str(window.project.doc().path)]) == n


def test_crash_recovery_offers_unsaved_boxes(qtbot, sample_dir, monkeypatch):
    from app.gui.main_window import MainWindow
    import app.formats.labelme as lm

    first = MainWindow()
    qtbot.addWidget(first)
    first.open_paths([sample_dir])
    wait_features(qtbot, first)
    writable = lm.atomic_write_text
    monkeypatch.setattr(lm, "atomic_write_text", lambda *a, **k: (_ for _ in ()).throw(OSError("read-only")))
    first.duplicate_selected()
    first.relabel(first.current_boxes()[-1].id, "unsaved one")
    # The process dies here: no close, no save. A new session starts.
    first.autosave_timer.stop()
    first.autosave_timer.timeout.disconnect()
    monkeypatch.setattr(lm, "atomic_write_text", writable)
    assert "unsaved one" not in (sample_dir / "chelsea.json").read_text()
    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    assert second.saving.offer_recovery()
    assert "unsaved boxes" in second.last_error and second.banner.action_button.isVisible()
    qtbot.mouseClick(second.banner.action_button, QtCore.Qt.MouseButton.LeftButton)
    wait_features(qtbot, second)
    assert "unsaved one" in [b.label for b in second.current_boxes()]
    second.saving.autosave()  # saving everything removes the journal
    assert recovery.read() is None
    assert "unsaved one" in (sample_dir / "chelsea.json").read_text()
    for w in (first, second):
        w.service.pool.waitForDone(20000)


def test_user_model_becomes_an_extractor(qtbot, window, sample_dir, tmp_path):
    import keras

    inp = keras.Input(shape=(None, None, 3))
    x = keras.layers.Conv2D(3, 3, strides=2, padding="same", name="conv_a")(inp)
    x = keras.layers.Conv2D(5, 3, strides=2, padding="same", name="conv_b")(x)
    keras.Model(inp, x).save(tmp_path / "tiny.keras")
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    window.load_model(tmp_path / "tiny.keras")
    assert window.settings_bar.extractor_combo.currentText() == "model: tiny.keras"
    assert [window.settings_bar.layer_combo.itemText(i) for i in range(window.settings_bar.layer_combo.count())] == ["conv_a", "conv_b"]
    qtbot.waitUntil(lambda: window.inspection.features is not None and window.inspection.features.features.shape[-1] == 5, timeout=30000)
    assert window.inspection.features.stride == 4.0 and window.inspection.pooled["roi_align"].shape[-1] == 5
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    assert window.load_model(tmp_path / "junk.keras") is None
    assert "junk.keras" in window.last_error and "cannot load" in window.last_error
