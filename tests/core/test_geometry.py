"""The overlay's geometry (roi_core.geometry) against what the operators compute."""
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from roi_core import roi_align, roi_pool
from roi_core.geometry import roi_align_samples, roi_pool_cells

coord = st.floats(-20, 60, allow_nan=False, width=32)
H, W = 9, 12


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    box=st.tuples(coord, coord, coord, coord),
    ph=st.integers(1, 5),
    pw=st.integers(1, 5),
    scale=st.sampled_from([1.0, 0.5, 0.25, 0.3]),
    cell=st.tuples(st.integers(0, H - 1), st.integers(0, W - 1)),
)
def test_one_hot_maximum_lands_in_the_drawn_cell(box, ph, pw, scale, cell):
    """Pool a map that is 1 at one cell and -1 elsewhere: a bin gives 1 exactly when the drawn
    cell ranges contain that cell."""
    feats = -np.ones((1, H, W, 1), np.float32)
    feats[0, cell[0], cell[1], 0] = 1.0
    pooled = roi_pool(feats, [[0, *box]], (ph, pw), scale).numpy()[0, :, :, 0]
    drawn = roi_pool_cells(box, scale, (ph, pw), (H, W))
    for p, (hs, he) in enumerate(drawn["rows"]):
        for q, (ws, we) in enumerate(drawn["cols"]):
            inside = hs <= cell[0] < he and ws <= cell[1] < we
            assert (pooled[p, q] == 1.0) == inside, (p, q, drawn)
            empty = he <= hs or we <= ws
            assert (pooled[p, q] == 0.0) == empty


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    box=st.tuples(coord, coord, coord, coord),
    ph=st.integers(1, 4),
    pw=st.integers(1, 4),
    scale=st.sampled_from([1.0, 0.5, 0.25, 0.3]),
    aligned=st.booleans(),
)
def test_align_samples_are_where_roi_align_samples(box, ph, pw, scale, aligned):
    """Bilinear interpolation of a ramp is exact: with one sample per bin, roi_align of the maps
    x and y returns the sample's own position wherever it lies inside the map."""
    ys_grid, xs_grid = np.meshgrid(np.arange(H, dtype=np.float32), np.arange(W, dtype=np.float32), indexing="ij")
    feats = np.stack([xs_grid, ys_grid], axis=-1)[None]
    got = roi_align(feats, [[0, *box]], (ph, pw), scale, 1, aligned).numpy()[0]
    drawn = roi_align_samples(box, scale, (ph, pw), 1, aligned)
    assert drawn["ys"].shape == (ph, 1) and drawn["xs"].shape == (pw, 1)
    for p in range(ph):
        for q in range(pw):
            y, x = drawn["ys"][p, 0], drawn["xs"][q, 0]
            if 0 <= y <= H - 1 and 0 <= x <= W - 1:
                np.testing.assert_allclose(got[p, q], [x, y], atol=2e-5 * max(1.0, abs(x), abs(y)))
            elif not (-1 <= y <= H and -1 <= x <= W):
                assert np.all(got[p, q] == 0.0)  # dropped: outside the map by more than a cell


def test_adaptive_sample_counts_follow_the_bin_size():
    drawn = roi_align_samples([0, 0, 14, 7], 1.0, (7, 7), -1, False)
    assert drawn["xs"].shape == (7, 2) and drawn["ys"].shape == (7, 1)
    np.testing.assert_array_equal(drawn["xs"][0], [0.5, 1.5])
    np.testing.assert_array_equal(drawn["ys"][:, 0], np.arange(7) + 0.5)


def test_pool_cells_of_a_box_inside_the_map():
    drawn = roi_pool_cells([1, 2, 6, 4], 1.0, (2, 3), (9, 12))  # 6 columns, 3 rows (inclusive end)
    np.testing.assert_array_equal(drawn["cols"], [[1, 3], [3, 5], [5, 7]])
    np.testing.assert_array_equal(drawn["rows"], [[2, 4], [3, 5]])
