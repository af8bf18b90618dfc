"""The RoIPool window walk (the XLA path for RoIs of any size) against the NumPy reference,
bit for bit: NaN, -inf, -FLT_MAX, empty bins, boxes far off the map, no boxes at all."""
import numpy as np
import pytest
import tensorflow as tf

from roi_core import _pool_kernels, roi_pool
from roi_core.reference import roi_pool_ref

FLT_MAX = np.finfo(np.float32).max


def _awkward_case():
    rng = np.random.default_rng(11)
    feats = rng.normal(size=(2, 9, 12, 3)).astype(np.float32)
    feats[0, 2, 3, 1] = np.nan  # beside finite values: skipped
    feats[1, :4, :4, 0] = -np.inf  # a corner of -inf: bins there have no winner
    feats[0, 5:, 5:, 2] = np.nan  # a block of NaN in one channel
    feats[0, 0, 0, :] = -FLT_MAX  # never beats the start value either
    feats[1, 6, 2:6, :] = 1.5  # ties: the first (row-major) one wins
    boxes = np.array(
        [
            [0, 1, 1, 8, 7],
            [1, -5, -5, 30, 30],  # beyond the map on every side
            [0, 3, 3, 2, 2],  # inverted: one cell
            [1, 0, 0, 0, 0],
            [0, 10, 2, 40, 3],  # half off the right edge: empty bins
            [1, -500, -300, 900, 800],  # many times the map
            [0, 5, 5, 11, 8],
            [1, 0, 0, 3, 3],  # inside the -inf corner
            [1, 1, 5, 8, 7],  # over the ties
        ],
        np.float32,
    )
    return feats, boxes


def _walk(feats, boxes, size, scale):
    return tf.function(lambda f, b: _pool_kernels._pool_forward_walk(f, b, *size, tf.constant(scale)), jit_compile=True)(feats, boxes)


@pytest.mark.parametrize("size, scale", [((3, 2), 1.0), ((1, 1), 1.0), ((7, 7), 1.0), ((2, 5), 0.5)])
def test_walk_equals_torchvision_bit_for_bit(size, scale):
    feats, boxes = _awkward_case()
    np.testing.assert_array_equal(_walk(feats, boxes, size, scale).numpy(), roi_pool_ref(feats, boxes, size, scale))


def test_walk_of_no_boxes():
    feats, boxes = _awkward_case()
    assert _walk(feats, boxes[:0], (2, 2), 1.0).shape == (0, 2, 2, 3)  # static 0
    # a count that is 0 only at run time: the spare bin keeps every array non-empty
    unknown = tf.function(
        lambda f, b: _pool_kernels._pool_forward_walk(f, b, 2, 2, tf.constant(1.0)),
        jit_compile=True,
        input_signature=[tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, 5])],
    )
    assert unknown(feats, boxes[:0]).shape == (0, 2, 2, 3)
    np.testing.assert_array_equal(unknown(feats, boxes).numpy(), roi_pool_ref(feats, boxes, 2, 1.0))


def test_jit_roi_pool_takes_the_walk_for_boxes_beyond_the_bounds(monkeypatch):
    feats, boxes = _awkward_case()
    calls = []
    walk = _pool_kernels._pool_forward_walk
    monkeypatch.setattr(_pool_kernels, "_pool_forward_walk", lambda *a: calls.append(1) or walk(*a))
    got = tf.function(lambda f, b: roi_pool(f, b, (3, 2), 1.0), jit_compile=True)(feats, boxes).numpy()
    assert calls  # traced into the caller's XLA as the path for the large boxes
    np.testing.assert_array_equal(got, roi_pool_ref(feats, boxes, (3, 2), 1.0))
