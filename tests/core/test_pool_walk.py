"""The RoIPool window walk (the XLA path for RoIs of any size, and the compiled gradient)
against the NumPy reference: NaN, -inf, -FLT_MAX, ties, empty bins, boxes far off the map,
no boxes at all."""
import numpy as np
import pytest
import tensorflow as tf

from roi_core import _pool_kernels, roi_pool
from roi_core.reference import roi_pool_ref
from tests.core.compile_modes import MODES, gradient_in_mode, run_in_mode

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
    return tf.function(lambda f, b: _pool_kernels._walk_forward(f, b, *size, tf.constant(scale)), jit_compile=True)(feats, boxes)


@pytest.mark.parametrize("size, scale", [((3, 2), 1.0), ((1, 1), 1.0), ((7, 7), 1.0), ((2, 5), 0.5)])
def test_walk_equals_torchvision_bit_for_bit(size, scale):
    feats, boxes = _awkward_case()
    np.testing.assert_array_equal(_walk(feats, boxes, size, scale).numpy(), roi_pool_ref(feats, boxes, size, scale))


def test_walk_of_no_boxes():
    feats, boxes = _awkward_case()
    assert _walk(feats, boxes[:0], (2, 2), 1.0).shape == (0, 2, 2, 3)  # static 0
    # a count that is 0 only at run time: the spare bin keeps every array non-empty
    unknown = tf.function(
        lambda f, b: _pool_kernels._walk_forward(f, b, 2, 2, tf.constant(1.0)),
        jit_compile=True,
        input_signature=[tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, 5])],
    )
    assert unknown(feats, boxes[:0]).shape == (0, 2, 2, 3)
    np.testing.assert_array_equal(unknown(feats, boxes).numpy(), roi_pool_ref(feats, boxes, 2, 1.0))


def test_jit_roi_pool_takes_the_walk_for_boxes_beyond_the_bounds(monkeypatch):
    feats, boxes = _awkward_case()
    calls = []
    walk = _pool_kernels._walk_forward
    monkeypatch.setattr(_pool_kernels, "_walk_forward", lambda *a: calls.append(1) or walk(*a))
    got = tf.function(lambda f, b: roi_pool(f, b, (3, 2), 1.0), jit_compile=True)(feats, boxes).numpy()
    assert calls  # traced into the caller's XLA as the path for the large boxes
    np.testing.assert_array_equal(got, roi_pool_ref(feats, boxes, (3, 2), 1.0))


def _first_maximum_gradient(feats, boxes, size, scale, upstream):
    _, argmax = roi_pool_ref(feats, boxes, size, scale, return_argmax=True)
    want = np.zeros_like(feats)
    for k, p, q, c in np.ndindex(argmax.shape):
        if argmax[k, p, q, c] >= 0:
            h, w = divmod(argmax[k, p, q, c], feats.shape[2])
            want[int(boxes[k, 0]), h, w, c] += upstream[k, p, q, c]
    return want


@pytest.mark.parametrize("mode", MODES)
def test_gradient_goes_to_the_first_maximum_in_every_mode(mode):
    # compiled modes walk the bins (tf_function, jit, large_eager and direct: the Numba forward
    # has the graph kernels' gradient); eager finds the maxima on index tables
    feats, boxes = _awkward_case()
    size, scale = (3, 2), 1.0
    want = roi_pool_ref(feats, boxes, size, scale)
    upstream = np.random.default_rng(5).normal(size=want.shape).astype(np.float32)
    np.testing.assert_array_equal(run_in_mode(mode, lambda f, b: roi_pool(f, b, size, scale), feats, boxes), want)
    got = gradient_in_mode(mode, lambda x: roi_pool(x, boxes, size, scale), feats, upstream)
    np.testing.assert_allclose(got, _first_maximum_gradient(feats, boxes, size, scale, upstream), rtol=1e-6, atol=1e-6)


def test_walk_gradient_of_no_boxes_and_of_a_count_known_only_at_run_time():
    feats, boxes = _awkward_case()
    grad = tf.function(
        lambda f, b, up: _pool_kernels._walk_backward(f, b, 2, 2, tf.constant(0.5), up),
        jit_compile=True,
        input_signature=[tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, 5]), tf.TensorSpec([None, 2, 2, 3])],
    )
    np.testing.assert_array_equal(grad(feats, boxes[:0], np.zeros((0, 2, 2, 3), np.float32)).numpy(), np.zeros_like(feats))
    upstream = np.random.default_rng(6).normal(size=(len(boxes), 2, 2, 3)).astype(np.float32)
    want = _first_maximum_gradient(feats, boxes, (2, 2), 0.5, upstream)
    np.testing.assert_allclose(grad(feats, boxes, upstream).numpy(), want, rtol=1e-6, atol=1e-6)
