"""The same answer in every call mode, including the cases where compiled code used to round
or compare differently from torchvision (issue 14)."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings, strategies as st

from roi_core import roi_align, roi_pool
from roi_core.reference import roi_align_ref, roi_pool_ref
from tests.core.compile_modes import MODES, assert_align_equal, gradient_in_mode, run_in_mode
from tests.core.test_align_walk import _adjoint_by_reference

FLT_MAX = np.finfo(np.float32).max


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sampling_ratio", [1, -1])
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_sample_exactly_past_the_right_edge_is_dropped(mode, sampling_ratio, scale):
    # torchvision: x = 8 + 3 * (2/7) rounds to 8.857143, + (0.5 * 2/7) to 9.000001 > W = 9: the
    # sample is dropped. One FMA for 8 + 3 * (2/7) gives 9.0, which counts.
    feats = np.random.default_rng(0).normal(size=(2, 7, 9, 3)).astype(np.float32)
    boxes = np.array([[1, 8, 5, 10, 6]], np.float32)
    boxes[:, 1:] /= scale
    want = roi_align_ref(feats, boxes, 7, scale, sampling_ratio, False)
    if sampling_ratio == 1:
        assert np.all(want[0, :, 3] == 0.0)  # the case is the one the issue describes
    got = run_in_mode(mode, lambda f, b: roi_align(f, b, 7, scale, sampling_ratio, False), feats, boxes)
    np.testing.assert_array_equal(got, want)


def test_large_eager_fixed_ratio_under_a_tape_is_exact():
    # Above EAGER_COMPILE_MIN_OUTPUTS with no patching: 16 * 7 * 7 * 2700 outputs.
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(2, 7, 9, 2700)).astype(np.float32)
    boxes = np.tile(np.array([[0, 5, 3, 12, 9]], np.float32), (16, 1))
    upstream = rng.normal(size=(16, 7, 7, 2700)).astype(np.float32)
    x = tf.constant(feats)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = roi_align(x, boxes, 7, 1.0, 1, False)
    grad = tape.gradient(out, x, output_gradients=tf.constant(upstream)).numpy()
    np.testing.assert_array_equal(out.numpy(), roi_align_ref(feats, boxes, 7, 1.0, 1, False))
    want = _adjoint_by_reference(feats, boxes, 7, 1.0, 1, False, upstream)
    np.testing.assert_allclose(grad, want, atol=1e-3, rtol=1e-5)


def _nan_and_inf_case():
    feats = np.random.default_rng(2).normal(size=(1, 6, 8, 2)).astype(np.float32)
    feats[0, 1, 1, 0] = np.nan  # a NaN beside finite values: ignored, as torchvision's v > best
    feats[0, 0:3, 4:8, :] = -np.inf  # a whole bin of -inf: -FLT_MAX and no gradient
    feats[0, 4, 0:3, 1] = np.nan  # a whole bin of NaN in one channel: -FLT_MAX too
    feats[0, 5, 5, 0] = np.inf
    boxes = np.array([[0, 0, 0, 7, 5], [0, 4, 0, 7, 2], [0, 0, 4, 2, 4], [0, 0, 0, 3, 3]], np.float32)
    return feats, boxes


@pytest.mark.parametrize("mode", MODES)
def test_roi_pool_ignores_nan_and_all_minus_inf_bins_give_minus_flt_max(mode):
    feats, boxes = _nan_and_inf_case()
    want, argmax = roi_pool_ref(feats, boxes, 2, 1.0, return_argmax=True)
    assert np.any(want == -FLT_MAX) and not np.any(np.isnan(want))
    got = run_in_mode(mode, lambda f, b: roi_pool(f, b, 2, 1.0), feats, boxes)
    np.testing.assert_array_equal(got, want)
    upstream = np.random.default_rng(3).normal(size=want.shape).astype(np.float32)
    grad = gradient_in_mode(mode, lambda x: roi_pool(x, boxes, 2, 1.0), feats, upstream)
    expected = np.zeros_like(feats)
    for k, p, q, c in np.ndindex(argmax.shape):
        if argmax[k, p, q, c] >= 0:
            h, w = divmod(argmax[k, p, q, c], feats.shape[2])
            expected[int(boxes[k, 0]), h, w, c] += upstream[k, p, q, c]
    np.testing.assert_allclose(grad, expected, atol=1e-6)


box_coord = st.floats(-10, 50, allow_nan=False, width=32)


# 3 examples, not 6 (each compiles both operators in four modes): the cases where modes used to
# differ are explicit above (a sample exactly past the right edge, NaN and -inf bins), and
# test_ops_reference checks its EDGE_BOXES against the reference in every mode
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    coords=st.lists(st.tuples(st.integers(0, 1), box_coord, box_coord, box_coord, box_coord), min_size=1, max_size=5),
    size=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    scale=st.sampled_from([1.0, 0.5, 0.25, 0.3]),
    sampling_ratio=st.integers(-1, 2),
    aligned=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_call_modes_agree(coords, size, scale, sampling_ratio, aligned, seed):
    """Both operators bit for bit in every mode, and equal to the reference (torchvision's
    float32 sums in its order)."""
    feats = np.random.default_rng(seed).normal(size=(2, 8, 11, 2)).astype(np.float32)
    boxes = np.array(coords, np.float32)

    def both(f, b):  # one trace and one XLA cluster per mode for both operators (half the compiles)
        pool = roi_pool(f, b, size, scale)
        align = roi_align(f, b, size, scale, sampling_ratio, aligned)
        return tf.concat([tf.reshape(pool, [-1]), tf.reshape(align, [-1])], 0)

    outputs = [np.split(run_in_mode(m, both, feats, boxes), 2) for m in MODES]
    want = roi_align_ref(feats, boxes, size, scale, sampling_ratio, aligned)
    for pooled, aligned_out in outputs:
        np.testing.assert_array_equal(pooled, outputs[0][0])
        assert_align_equal(aligned_out.reshape(want.shape), want, boxes, size, scale, sampling_ratio, aligned)
