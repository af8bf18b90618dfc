from app.pooling import MULTI_SCALE
from app.pyramid import PYRAMID
from tests.gui.conftest import wait_features


def test_pyramid_layer_offers_multi_scale_and_each_box_shows_its_level(qtbot, window, sample_dir):
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    bar = window.settings_bar
    ops = [bar.op_combo.itemText(i) for i in range(bar.op_combo.count())]
    assert "Multi-scale RoIAlign" not in ops
    bar.layer_combo.setCurrentText(PYRAMID)
    qtbot.waitUntil(lambda: window.inspection.pyramid is not None, timeout=60000)
    bar.op_combo.setCurrentText("Multi-scale RoIAlign")
    insp = window.inspection
    assert insp.ops == (MULTI_SCALE,) and insp.pooled[MULTI_SCALE].shape[0] == len(window.current_boxes())
    assert window.inspector.align_panel.isVisible() and "level" in window.inspector.align_panel.title_text()
    table = window.inspector.table
    assert all("level" in table.item(r, table.columnCount() - 1).text() for r in range(table.rowCount()))
    assert len(window.canvas.grid_points.getData()[0]) > 0
    bar.layer_combo.setCurrentText("stride 4")  # back to one map: back to plain RoIAlign
    assert bar.op_combo.currentText() == "RoIAlign" and insp.ops == ("roi_align",)
