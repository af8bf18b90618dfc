"""The region map docked in the main window, linked both ways with the boxes."""
import numpy as np
from PySide6 import QtCore

from tests.gui.conftest import wait_features
from tests.gui.test_region_map_panel import LEFT, drag_path, widget_pos


def open_map(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    rm = window.region_map
    with qtbot.waitSignal(rm.panel.map_ready, timeout=120000):
        qtbot.keyClick(window, QtCore.Qt.Key.Key_M, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert rm.dock.isVisible() and len(rm.panel.map) == 4  # two sample images, two boxes each
    return rm


def test_clicking_a_point_opens_its_image_and_selects_the_box(qtbot, window, sample_dir):
    rm = open_map(qtbot, window, sample_dir)
    # The box selected when the map opens is ringed at once.
    assert rm.panel.current == rm.panel.map.index_of(str(window.project.doc().path), window.inspection.selected)
    table = rm.panel.map.table
    i = next(k for k in range(len(table)) if table.images[k].endswith("coffee.png"))
    box_id = table.key(i)[1]
    x, y = rm.panel.map.xy[i]
    qtbot.mouseClick(rm.panel.plot.viewport(), LEFT, pos=widget_pos(rm.panel, x, y))
    assert window.windowTitle() == "RoIScope - coffee.png"
    assert window.inspection.selected == box_id
    assert rm.panel.current == i  # selecting the box rings its point


def test_lasso_relabel_is_one_undo_step_across_images(qtbot, window, sample_dir):
    rm = open_map(qtbot, window, sample_dir)
    rm.panel.fit()
    (x0, x1), (y0, y1) = rm.panel.vb.viewRange()
    dx, dy = (x1 - x0) * 0.02, (y1 - y0) * 0.02
    corners = [(x0 + dx, y0 + dy), (x1 - dx, y0 + dy), (x1 - dx, y1 - dy), (x0 + dx, y1 - dy), (x0 + dx, y0 + dy)]
    rm.panel.tools["lasso"].setChecked(True)
    drag_path(qtbot, rm.panel, corners, QtCore.Qt.KeyboardModifier.NoModifier)
    assert len(rm.panel.selected_regions()) == 4
    before = {d.path.name: [b.label for b in d.boxes] for d in window.project.images}
    rm.panel.request_relabel("thing")
    assert all(b.label == "thing" for d in window.project.images for b in d.boxes)
    assert set(rm.panel.map.table.labels) == {"thing"}  # the points follow
    window.undo_stack.undo()
    assert {d.path.name: [b.label for b in d.boxes] for d in window.project.images} == before


def test_moving_a_box_moves_its_point(qtbot, window, sample_dir):
    rm = open_map(qtbot, window, sample_dir)
    doc = window.project.doc()
    box = doc.boxes[0]
    i = rm.panel.map.index_of(str(doc.path), box.id)
    before = rm.panel.map.xy[i].copy()
    window.inspection.select(box.id)
    from app.gui import commands

    window.undo_stack.push(commands.replace_box(doc, box, box.moved_to(box.x1 + 60, box.y1 + 40, box.x2 + 60, box.y2 + 40), window.doc_changed))
    qtbot.wait(50)
    assert not np.allclose(rm.panel.map.xy[rm.panel.map.index_of(str(doc.path), box.id)], before)
