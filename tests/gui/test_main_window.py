import json

import numpy as np
from PySide6 import QtCore

from tests.gui.conftest import drag, view_to_widget, wait_features


def test_opens_folder_with_sidecar_boxes_and_pooled_grid(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    assert window.windowTitle() == "RoIScope - chelsea.png"
    assert window.image_list.count() == 2
    assert "[2]" in window.image_list.item(0).text()
    assert window.inspection.pooled["roi_align"].shape[:3] == (2, 7, 7)
    assert window.inspector.pool_panel.isHidden() and window.inspector.align_panel.image.image.shape == (7, 7)


def test_drag_creates_box_undo_redo(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    n = len(window.current_boxes())
    qtbot.keyClick(window, QtCore.Qt.Key.Key_W)
    assert window.canvas.view.draw_mode
    drag(qtbot, window.canvas, (20, 150), (120, 260))
    boxes = window.current_boxes()
    assert len(boxes) == n + 1
    new = boxes[-1]
    assert abs(new.x1 - 20) < 3 and abs(new.y2 - 260) < 3
    assert window.inspection.pooled["roi_align"].shape[0] == n + 1
    gallery_h = window.inspector.gallery.image.image.shape
    assert gallery_h[0] > 0
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Z, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert len(window.current_boxes()) == n
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Z, QtCore.Qt.KeyboardModifier.ControlModifier | QtCore.Qt.KeyboardModifier.ShiftModifier)
    assert len(window.current_boxes()) == n + 1
    assert len(window.canvas.boxes) == n + 1


def test_moving_a_box_changes_its_pooled_grid_and_is_one_undo_step(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    box = window.current_boxes()[0]
    window.canvas.select(box.id, emit=True)
    before = window.inspection.pooled["roi_align"][0].copy()
    cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
    updates = []
    window.pooled_updated.connect(lambda: updates.append(window.inspection.pooled["roi_align"][0].copy()))
    drag(qtbot, window.canvas, (cx, cy), (cx + 60, cy + 30), steps=10)
    moved = window.current_boxes()[0]
    assert abs(moved.x1 - (box.x1 + 60)) < 3 and abs(moved.y1 - (box.y1 + 30)) < 3
    assert not np.allclose(window.inspection.pooled["roi_align"][0], before)
    assert len(updates) >= 2  # live updates during the drag, not only at the end
    window.undo_stack.undo()
    assert window.current_boxes()[0] == box
    np.testing.assert_allclose(window.inspection.pooled["roi_align"][0], before)


def test_gallery_has_one_tile_per_box_and_click_selects(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    boxes = window.current_boxes()
    ph = window.settings_bar.size_spin.value()
    img = window.inspector.gallery.image.image
    cols = window.inspector.gallery_layout.columns
    rows = -(-len(boxes) // cols)
    assert img.shape == (rows * (ph + 1) - 1, cols * (ph + 1) - 1)
    window.inspector._gallery_clicked(0, (ph + 1) * 1 + 2)  # second tile
    assert window.canvas.selected == boxes[1].id


def test_clicking_a_channel_in_the_mosaic_selects_it(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    th, tw = window.inspector.mosaic_layout.tile_shape
    before = window.inspector.align_panel.image.image.copy()
    # Click the centre of the third tile with a real mouse click on the mosaic widget.
    item = window.inspector.mosaic.image
    scene = item.mapToScene(QtCore.QPointF(2 * (tw + 1) + tw / 2, th / 2))
    pos = window.inspector.mosaic.mapFromScene(scene)
    qtbot.mouseClick(window.inspector.mosaic.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: window.inspection.channel == 2, timeout=3000)
    assert not np.allclose(window.inspector.align_panel.image.image, before)
    assert "channel 2" in window.inspector.channel_panel.title_text()
    assert window.inspector.channel_panel.title.text().startswith("channel 2")  # what is shown, elided or not


def test_switching_op_and_output_size_updates_views(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    window.settings_bar.op_combo.setCurrentText("Both side by side")
    assert set(window.inspection.pooled) == {"roi_pool", "roi_align"}
    assert window.inspector.pool_panel.isVisible() and window.inspector.align_panel.isVisible()
    qtbot.wait(50)
    assert abs(window.inspector.pool_panel.width() - window.inspector.align_panel.width()) <= 10  # side by side, not a sliver
    assert len(window.canvas.grid_lines.getData()[0]) > 0 and len(window.canvas.grid_points.getData()[0]) > 0
    window.settings_bar.size_spin.setValue(3)
    assert window.inspection.pooled["roi_pool"].shape[1:3] == (3, 3)
    assert window.inspector.pool_panel.image.image.shape == (3, 3)


def test_delete_relabel_and_sidecar_round_trip(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    first = window.current_boxes()[0]
    window.canvas.select(first.id, emit=True)
    window.inspector.label_edit.setText("kitty face")
    window.inspector.label_edit.editingFinished.emit()
    assert window.current_boxes()[0].label == "kitty face"
    window.canvas.select(window.current_boxes()[1].id, emit=True)
    window.canvas.setFocus()
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Delete)
    assert len(window.current_boxes()) == 1
    qtbot.keyClick(window, QtCore.Qt.Key.Key_S, QtCore.Qt.KeyboardModifier.ControlModifier)
    data = json.loads((sample_dir / "chelsea.json").read_text())
    assert [s["label"] for s in data["shapes"]] == ["kitty face"]
    # Reopen: the boxes come back from the sidecar.
    window.open_paths([sample_dir])
    assert [b.label for b in window.current_boxes()] == ["kitty face"]


def test_corrupt_image_shows_error_and_window_keeps_working(qtbot, window, sample_dir):
    (sample_dir / "broken.png").write_bytes(b"\x89PNG not really")
    window.open_paths([sample_dir / "broken.png"])
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=10000)
    assert "broken.png" in window.last_error
    window.open_paths([sample_dir])  # broken.png sorts first; the others still work
    assert window.windowTitle() == "RoIScope - broken.png"
    qtbot.keyClick(window, QtCore.Qt.Key.Key_D)
    assert window.windowTitle() == "RoIScope - chelsea.png", window.last_error
    wait_features(qtbot, window)
    assert window.inspection.pooled["roi_align"].shape[0] == 2


def test_broken_sidecar_is_reported_and_never_overwritten(qtbot, window, sample_dir):
    (sample_dir / "chelsea.json").write_text("{ not json")
    window.open_paths([sample_dir])
    assert window.last_error and "chelsea.json" in window.last_error
    wait_features(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_S, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert (sample_dir / "chelsea.json").read_text() == "{ not json"


def test_next_previous_image_keys(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_D)
    assert window.windowTitle() == "RoIScope - coffee.png"
    wait_features(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_A)
    assert window.windowTitle() == "RoIScope - chelsea.png"


def test_clicking_and_dragging_an_unselected_box(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    first, second = window.current_boxes()[:2]
    window.canvas.select(-1, emit=True)
    # A click inside the second box (away from the first) selects it.
    x = (second.x1 + second.x2) / 2
    y = second.y2 - 3 if not (first.y1 <= second.y2 - 3 <= first.y2 and first.x1 <= x <= first.x2) else second.y1 + 3
    target = window.canvas.box_at(x, y)
    assert target in (first.id, second.id)
    pos = view_to_widget(window.canvas, x, y)
    qtbot.mouseClick(window.canvas.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)
    assert window.canvas.selected == target
    # Deselect, then drag the same box directly: it is grabbed and moved in one undo step.
    window.canvas.select(-1, emit=True)
    before = window.project.doc().box_by_id(target)
    drag(qtbot, window.canvas, (x, y), (x - 25, y - 15))
    after = window.project.doc().box_by_id(target)
    assert abs(after.x1 - (before.x1 - 25)) < 3 and abs(after.y1 - (before.y1 - 15)) < 3
    assert window.canvas.selected == target
    window.undo_stack.undo()
    assert window.project.doc().box_by_id(target) == before


def test_two_thousand_boxes_are_one_outline_item(qtbot, window, tmp_path):
    import cv2
    from app.formats import labelme
    from app.project import Box

    cv2.imwrite(str(tmp_path / "many.png"), np.zeros((300, 400, 3), np.uint8))
    rng = np.random.default_rng(0)
    boxes = [Box(x, y, x + 10, y + 8, "m") for x, y in zip(rng.uniform(0, 380, 2000), rng.uniform(0, 280, 2000))]
    labelme.write(tmp_path / "many.json", tmp_path / "many.png", boxes)
    window.open_paths([tmp_path])
    wait_features(qtbot, window)
    assert len(window.canvas.boxes) == 2000
    assert window.canvas.labels == []  # labels only for a readable number of boxes
    assert window.inspection.pooled["roi_align"].shape[0] == 2000
    b = window.current_boxes()[1234]
    hit = window.canvas.box_at((b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2)
    assert hit >= 0


def test_panels_keep_their_content_inside_their_width(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    qtbot.wait(50)
    for panel in (window.inspector.mosaic, window.inspector.channel_panel, window.inspector.gallery, window.inspector.align_panel):
        rect = panel.vb.sceneBoundingRect()
        assert rect.right() <= panel.viewport().width() + 1, panel.title_text()
    # The whole mosaic is in view (no channel cut off at the right).
    (x0, x1), _ = window.inspector.mosaic.vb.viewRange()
    assert x0 <= 0 and x1 >= window.inspector.mosaic.image.image.shape[1] - 1


def test_switching_layers_back_is_served_from_the_cache(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    first = window.inspection.features
    window.settings_bar.layer_combo.setCurrentText("stride 8")
    qtbot.waitUntil(lambda: window.inspection.features is not None and window.inspection.features.stride == 8.0, timeout=30000)
    window.settings_bar.layer_combo.setCurrentText("stride 4")
    assert window.inspection.features is first  # no wait, no recomputation: the cached maps themselves


def test_extraction_can_be_cancelled_and_the_window_goes_on(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    assert window.cancel_button.isVisible()
    qtbot.mouseClick(window.cancel_button, QtCore.Qt.MouseButton.LeftButton)
    assert not window.cancel_button.isVisible() and not window.progress.isVisible()
    qtbot.wait(1500)
    assert window.inspection.features is None  # the cancelled result was dropped
    qtbot.keyClick(window, QtCore.Qt.Key.Key_D)
    wait_features(qtbot, window)
    assert window.windowTitle() == "RoIScope - coffee.png"


def test_worker_warms_pooling_for_both_ops_and_the_box_counts_the_window_will_use(qtbot, window, sample_dir, monkeypatch):
    # Traces (and, for big calls, compiled kernels) depend on the op, the feature shape and the
    # box-count bucket: the worker runs both ops with the image's own count, a drag's 1 and
    # one box more, so that the GUI thread does not stall on them. The op on show (RoIAlign)
    # is warmed before the maps are handed over; the menu's other op after, so that the first
    # grid does not wait for it.
    import app.gui.worker as worker

    events = []
    real_pool, real_emit = worker.pool_boxes, worker._emit
    monkeypatch.setattr(worker, "pool_boxes", lambda feats, boxes, settings: events.append((len(boxes), settings.op)) or real_pool(feats, boxes, settings))

    def emit(signal, *args):  # features_ready is the signal whose key is a tuple
        if isinstance(args[1], tuple):
            events.append("features")
        real_emit(signal, *args)

    monkeypatch.setattr(worker, "_emit", emit)
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    n = len(window.current_boxes())
    assert n == 2
    qtbot.waitUntil(lambda: len(events) == 7, timeout=30_000)
    warmed = [e for e in events if e != "features"]
    assert sorted(warmed) == sorted((count, op) for count in (1, 2, 3) for op in ("roi_align", "roi_pool"))
    assert sorted(events[: events.index("features")]) == [(count, "roi_align") for count in (1, 2, 3)]
