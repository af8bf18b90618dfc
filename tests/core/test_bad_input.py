import numpy as np
import pytest

from roi_core import roi_align, roi_pool, ROIAlignLayer, ROIPoolingLayer

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
