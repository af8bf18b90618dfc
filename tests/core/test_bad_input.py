import numpy as np
import pytest

from roi_core import roi_align, roi_pool, ROIAlignLayer, ROIPoolingLayer
from roi_core.reference import roi_pool_ref
from tests.core.compile_modes import MODES, eager_compiled, run_in_mode

FEATS = np.zeros((2, 5, 5, 3), np.float32)
BOX = [[0, 0, 0, 2, 2]]


@pytest.mark.parametrize("fn", [roi_pool, roi_align])
@pytest.mark.parametrize(
    "features, boxes, size, match",
    [
        (np.zeros((5, 5, 3), np.float32), BOX, 2, "features must have rank 4"),
        (np.array([["a"]]), BOX, 2, "features must be a numeric"),
        (FEATS, [[0, 0, 0, 2]], 2, r"boxes must have shape \(K, 5\)"),
        (FEATS, [0, 0, 0, 2, 2], 2, r"boxes must have shape \(K, 5\)"),
        (FEATS, [[2, 0, 0, 2, 2]], 2, r"batch_index\) must be in \[0, 2\)"),
        (FEATS, [[-1, 0, 0, 2, 2]], 2, r"batch_index\) must be in"),
        (FEATS, [[0.5, 0, 0, 2, 2]], 2, "batch_index"),
        (FEATS, [[0, np.nan, 0, 2, 2]], 2, r"boxes must be finite: boxes\[0, 1\]"),
        (FEATS, [[0, 0, 0, np.inf, 2]], 2, "boxes must be finite"),
        (FEATS, BOX, 0, "output_size must be positive"),
        (FEATS, BOX, (2, -1), "output_size must be positive"),
        (FEATS, BOX, (1, 2, 3), "output_size must be an int or a pair"),
        (np.zeros((1, 0, 4, 1), np.float32), BOX, 2, "non-empty spatial grid"),
    ],
)
def test_bad_input_names_the_argument(fn, features, boxes, size, match):
    with pytest.raises(ValueError, match=match):
        fn(features, boxes, size)


@pytest.mark.parametrize("scale", [0, -1, np.nan, "x"])
def test_bad_spatial_scale(scale):
    with pytest.raises(ValueError, match="spatial_scale"):
        roi_pool(FEATS, BOX, 2, scale)


def test_bad_sampling_ratio():
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align(FEATS, BOX, 2, 1.0, 1.5)


def test_bad_layer_sizes():
    with pytest.raises(ValueError, match="pooled size must be positive"):
        ROIPoolingLayer(0, 2)
    with pytest.raises(ValueError, match="sampling_ratio"):
        ROIAlignLayer(2, 2, sampling_ratio="2")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("box, scale", [([0, -8e9, -8e9, 8e9, 8e9], 0.25), ([0, 0, 0, 8, 8], 1e30), ([0, -3e9, 1, 3e9, 4], 1.0)])
def test_roi_pool_boxes_beyond_int32_cells_still_cover_the_map(mode, box, scale):
    feats = np.random.default_rng(5).normal(size=(1, 6, 7, 2)).astype(np.float32)
    boxes = np.array([box], np.float32)
    got = run_in_mode(mode, lambda f, b: roi_pool(f, b, 7, scale), feats, boxes)
    want = roi_pool_ref(feats, boxes, 7, scale)
    np.testing.assert_array_equal(got, want)
    # Some bin holds the maximum of the rows the box covers (the whole map for the first two).
    rows = slice(1, 5) if box[2] == 1 else slice(None)
    np.testing.assert_array_equal(got.max(axis=(0, 1, 2)), feats[0, rows].max(axis=(0, 1)))


def test_float64_features_beyond_float32_are_refused():
    feats = np.zeros((1, 4, 4, 2), np.float64)
    feats[0, 2, 3, 1] = 1e300
    for fn in (roi_pool, roi_align):
        with pytest.raises(ValueError, match=r"features must fit float32.*features\[0, 2, 3, 1\] is 1e\+300"):
            fn(feats, BOX, 2)
    feats[0, 2, 3, 1] = 3e38  # within float32: accepted
    assert np.isfinite(roi_align(feats, BOX, 2).numpy()).all()


def test_eager_calls_with_new_shapes_do_not_warn_about_retracing(capfd, caplog):
    # TensorFlow warns once a function traces 5 times within 10 calls: 6 map sizes trace each
    # operator's graph 6 times (every size compiles new kernels, so more sizes only cost time).
    rng = np.random.default_rng(6)
    for compiled in (False, True):
        with eager_compiled(compiled):
            for i, (h, w) in enumerate([(10, 12), (13, 9), (20, 17), (8, 30), (25, 25), (11, 14)]):
                feats = rng.normal(size=(1, h, w, 3)).astype(np.float32)
                boxes = np.array([[0, 1, 1, 5, 6]] * (i + 1), np.float32)
                roi_pool(feats, boxes, 3)
                roi_align(feats, boxes, 3)
                roi_align(feats, boxes, 3, 0.5, 2)
    logged = capfd.readouterr().err + caplog.text
    assert "retracing" not in logged
