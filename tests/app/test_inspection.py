"""The inspection model without Qt: what is pooled, what is shown, and where the bins fall."""
import numpy as np
import pytest

from app.inspection import Inspection, align_sample_points, pool_cell_lines
from app.pooling import PoolSettings, pool_boxes
from app.regions import Box
from roi_core.backbones import Features


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    return Features(rng.normal(size=(1, 24, 32, 5)).astype(np.float32), 4.0, [f"c{i}" for i in range(5)])


def boxes():
    return [Box(8, 8, 60, 50, "a", 1), Box(40, 20, 120, 90, "b", 2), Box(0, 0, 1e300, 10, "huge", 3), Box(5, 60, 30, 90, "c", 4)]


def make(features):
    insp = Inspection()
    events = []
    for name in ("settings", "features", "pooled", "selection", "channel", "boxes"):
        insp.events.connect(name, lambda name=name, **kw: events.append(name))
    insp.set_features(features)
    insp.set_boxes(boxes())
    return insp, events


def test_pools_every_poolable_box_and_names_the_rest(features):
    insp, _ = make(features)
    good = [b for b in boxes() if b.problem() is None]
    want = pool_boxes(features, [b.corners() for b in good], PoolSettings("roi_align", (7, 7)))
    pooled = insp.pooled["roi_align"]
    assert pooled.shape == (4, 7, 7, 5)
    np.testing.assert_array_equal(pooled[[0, 1, 3]], want)
    assert np.isnan(pooled[2]).all()
    assert set(insp.problems()) == {3} and "float32" in insp.problems()[3]


def test_settings_that_affect_pooling_repool(features):
    insp, events = make(features)
    events.clear()
    assert insp.update_settings(output_size=3, ops=("roi_pool", "roi_align")) == {"output_size", "ops"}
    assert events == ["settings", "pooled"]
    assert set(insp.pooled) == {"roi_pool", "roi_align"} and insp.pooled["roi_pool"].shape[1:3] == (3, 3)
    events.clear()
    insp.update_settings(colormap="magma")
    assert events == ["settings"]  # display-only: no re-pooling
    with pytest.raises(ValueError, match="unknown settings"):
        insp.update_settings(colour="red")
    with pytest.raises(ValueError, match="ops"):
        insp.update_settings(ops=("roi_max",))


def test_selection_grid_and_hover_value(features):
    insp, _ = make(features)
    assert insp.grid("roi_align") is None
    insp.select(2)
    grid = insp.grid("roi_align")
    np.testing.assert_array_equal(grid, insp.pooled["roi_align"][1, :, :, 0])
    assert insp.value_text("roi_align", 2, 3) == f"RoIAlign bin (2, 3) = {grid[2, 3]:.5g}"
    assert insp.value_text("roi_align", 9, 0) is None
    insp.set_channel(99)
    assert insp.channel == 4  # clamped to the channels there are
    insp.select(77)
    assert insp.selected == -1


def test_live_drag_repools_only_the_dragged_box(features):
    insp, events = make(features)
    before = insp.pooled["roi_align"].copy()
    insp.drag(2, (50, 30, 130, 100))
    events.clear()
    assert insp.apply_live()
    assert events == ["pooled"]
    after = insp.pooled["roi_align"]
    want = pool_boxes(features, [(50, 30, 130, 100)], PoolSettings("roi_align", (7, 7)))[0]
    np.testing.assert_array_equal(after[1], want)
    np.testing.assert_array_equal(after[[0, 3]], before[[0, 3]])
    insp.end_drag(2)
    assert not insp.apply_live()


def test_clear_leaves_nothing_of_the_previous_image(features):
    insp, _ = make(features)
    insp.select(1)
    insp.clear()
    assert insp.features is None and insp.pooled == {} and insp.boxes == [] and insp.selected == -1
    assert insp.gallery() is None and insp.feature_mosaic() is None and insp.overlay() == (None, None)


def test_gallery_tiles_map_back_to_boxes_and_empty_slots_are_background(features):
    insp, _ = make(features)
    mosaic = insp.gallery()
    assert mosaic.count == 4 and mosaic.columns == 2
    th, tw = mosaic.tile_shape
    assert insp.box_at_gallery(mosaic, 0, tw + 1 + 2).id == 2  # second tile
    assert insp.box_at_gallery(mosaic, th + 1, 0).id == 3
    assert insp.box_at_gallery(mosaic, 0, tw) is None  # the gap between tiles
    insp.set_boxes(boxes()[:3])  # three tiles in two columns: the fourth slot is empty
    mosaic = insp.gallery()
    assert mosaic.columns == 2 and np.isnan(mosaic.image[th + 1:, tw + 1:]).all()
    assert np.isfinite(mosaic.image[:th, :tw]).all()


def test_feature_mosaic_clicks_pick_channels(features):
    insp, _ = make(features)
    mosaic = insp.feature_mosaic()
    th, tw = mosaic.tile_shape
    assert mosaic.count == 5
    r, c = divmod(3, mosaic.columns)
    assert mosaic.index_at(r * (th + 1) + 1, c * (tw + 1) + 1) == 3
    r, c = divmod(4, mosaic.columns)
    assert mosaic.index_at(r * (th + 1), c * (tw + 1)) == 4
    assert mosaic.index_at(r * (th + 1), (c + 1) * (tw + 1)) is None  # past the last channel


def test_overlay_is_in_image_pixels(features):
    insp, _ = make(features)
    insp.update_settings(ops=("roi_pool", "roi_align"), output_size=2)
    insp.select(1)
    lines, points = insp.overlay()
    # RoIPool cells are whole feature cells: their edges are multiples of the stride.
    assert np.allclose(lines % 4.0, 0)
    # RoIAlign (aligned) samples of the box 8..60 x 8..50 lie inside it.
    assert (points[:, 0] > 8).all() and (points[:, 0] < 60).all() and (points[:, 1] > 8).all() and (points[:, 1] < 50).all()
    insp.select(3)  # the unpoolable box has no overlay
    assert insp.overlay() == (None, None)


def test_overlay_helpers():
    cells = {"rows": np.array([[1, 3], [3, 5]]), "cols": np.array([[0, 2]])}
    segs = pool_cell_lines(cells, 2.0)
    assert segs.shape == (12, 2) and segs[:, 1].max() == 10 and segs[:, 0].max() == 4
    pts = align_sample_points({"ys": np.array([[0.0]]), "xs": np.array([[1.0, 2.0]])}, 4.0)
    np.testing.assert_array_equal(pts, [[6.0, 2.0], [10.0, 2.0]])
