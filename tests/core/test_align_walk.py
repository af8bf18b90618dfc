"""RoIAlign's sample walk (roi_core/_align_walk.py): torchvision's float32 sums bit for bit
whether compiled or not, grouped or not, position-sensitive or not; the contraction for RoIs
beyond its grid limit; and the gradient (the contraction's adjoint)."""
import numpy as np
import pytest
import tensorflow as tf

from roi_core import _align_core, _align_walk, _pool_kernels, compile_policy, ps_roi_align, roi_align, roi_pool
from roi_core.reference import ps_roi_align_ref, roi_align_ref
from tests.bench.core_bench import varied_boxes
from tests.core.compile_modes import MODES, eager_compiled, run_in_mode

ATOL = 1e-5


# Uncompiled graphs walk one sample per step (Grappler re-associates unrolled adds).
@pytest.mark.parametrize("compiled,group,unroll", [(False, None, 1), (True, None, 1), (True, None, 3), (True, 16, 2), (True, 5, 4)])
@pytest.mark.parametrize("aligned", [False, True])
def test_walk_sums_as_torchvision_bit_for_bit(aligned, group, unroll, compiled):
    # 37 RoIs of varied size: groups of 16 leave a padded last group; the sort matters.
    rng = np.random.default_rng(7)
    feats = rng.normal(size=(2, 19, 23, 5)).astype(np.float32)
    boxes = np.concatenate([varied_boxes(rng, 36, 19, 23, 4, n_img=2), [[1, 32, 20, 40, 24]]]).astype(np.float32)
    walk = _align_walk.walk_xla if compiled else tf.function(_align_walk.walk_impl, autograph=False)
    got = walk(tf.constant(feats), tf.constant(boxes), 7, 5, 0.25, -1, aligned, group=group, unroll=unroll)
    np.testing.assert_array_equal(got.numpy(), roi_align_ref(feats, boxes, (7, 5), 0.25, -1, aligned))


@pytest.mark.parametrize("mode", MODES)
def test_position_sensitive_walk_reads_only_each_bins_group_bit_for_bit(mode):
    rng = np.random.default_rng(12)
    feats = rng.normal(size=(2, 13, 17, 3 * 2 * 4)).astype(np.float32)
    boxes = np.concatenate([varied_boxes(rng, 20, 13, 17, 4, n_img=2), [[1, 8, 5, 10, 6], [0, 0, 0, 0, 0]]]).astype(np.float32)
    for sampling_ratio in (-1, 2):
        got = run_in_mode(mode, lambda f, b: ps_roi_align(f, b, (3, 2), 0.25, sampling_ratio), feats, boxes)
        np.testing.assert_array_equal(got, ps_roi_align_ref(feats, boxes, (3, 2), 0.25, sampling_ratio))


def test_huge_rois_leave_the_walk_and_get_patched_in():
    rng = np.random.default_rng(8)
    feats = rng.normal(size=(1, 12, 10, 3)).astype(np.float32)
    inside = varied_boxes(rng, 20, 12, 10, 1, n_img=1)
    huge = np.array([[0, -200, -150, 300, 260], [0, -1e4, 2, 1e4, 9]], np.float32)  # over 1024 samples per bin
    boxes = np.concatenate([inside[:7], huge[:1], inside[7:], huge[1:]])
    counts = _align_walk.walk_counts(tf.constant(boxes), 3, 3, 1.0, -1, False).numpy()
    walked = counts <= _align_walk.MAX_SAMPLES_PER_BIN
    assert walked.tolist() == [True] * 7 + [False] + [True] * 13 + [False]
    kernel = _align_walk.walk_xla(tf.constant(feats), tf.constant(boxes), 3, 3, 1.0, -1, False, group=16, unroll=2).numpy()
    assert not kernel[~walked].any()  # left for the contraction
    want = roi_align_ref(feats, boxes, 3, 1.0, -1, False)
    for mode in MODES:
        got = run_in_mode(mode, lambda f, b: roi_align(f, b, 3, 1.0), feats, boxes)
        np.testing.assert_array_equal(got[walked], want[walked])
        np.testing.assert_allclose(got[~walked], want[~walked], atol=ATOL)


def test_walk_inside_callers_xla_and_with_unknown_box_count():
    rng = np.random.default_rng(9)
    feats = rng.normal(size=(2, 16, 16, 4)).astype(np.float32)
    boxes = varied_boxes(rng, 21, 16, 16, 8, n_img=2)
    want = roi_align_ref(feats, boxes, 4, 1 / 8, -1, True)
    jit = tf.function(lambda f, b: roi_align(f, b, 4, 1 / 8, -1, True), jit_compile=True)
    np.testing.assert_array_equal(jit(feats, boxes).numpy(), want)
    spec = [tf.TensorSpec([2, 16, 16, 4]), tf.TensorSpec([None, 5])]
    unknown_k = tf.function(lambda f, b: roi_align(f, b, 4, 1 / 8, -1, True), input_signature=spec)
    np.testing.assert_array_equal(unknown_k(feats, boxes).numpy(), want)
    np.testing.assert_array_equal(unknown_k(feats, boxes[:0]).numpy(), want[:0])
    unknown_k_jit = tf.function(lambda f, b: roi_align(f, b, 4, 1 / 8, -1, True), input_signature=spec, jit_compile=True)
    np.testing.assert_array_equal(unknown_k_jit(feats, boxes).numpy(), want)
    np.testing.assert_array_equal(unknown_k_jit(feats, boxes[:0]).numpy(), want[:0])


def _adjoint_by_reference(feats, boxes, output_size, scale, sampling_ratio, aligned, upstream):
    """RoIAlign is linear in the features: run the reference on one-hot "features" (one channel
    per input position) to get its matrix A, then the gradient is A^T upstream."""
    n_img, h, w, c = feats.shape
    eye = np.eye(n_img * h * w, dtype=np.float32).reshape(n_img, h, w, n_img * h * w)
    matrix = roi_align_ref(eye, boxes, output_size, scale, sampling_ratio, aligned)  # (K, ph, pw, BHW)
    grad = np.einsum("kpqc,kpqn->nc", upstream, matrix)
    return grad.reshape(n_img, h, w, c)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_gradient_is_the_adjoint(sampling_ratio, compiled):
    rng = np.random.default_rng(10)
    feats = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
    boxes = np.concatenate([varied_boxes(rng, 9, 6, 7, 1, n_img=2), [[1, -30, -20, 40, 35], [0, 2, 2, 2, 2]]]).astype(np.float32)
    upstream = rng.normal(size=(11, 3, 2, 3)).astype(np.float32)
    want = _adjoint_by_reference(feats, boxes, (3, 2), 1.0, sampling_ratio, False, upstream)
    x = tf.constant(feats)
    with tf.GradientTape() as tape, eager_compiled(compiled):
        tape.watch(x)
        out = roi_align(x, boxes, (3, 2), 1.0, sampling_ratio, False)
    np.testing.assert_allclose(tape.gradient(out, x, output_gradients=tf.constant(upstream)).numpy(), want, atol=1e-5)


@pytest.mark.parametrize("compiled", [True, False])
def test_eager_traces_across_map_sizes(monkeypatch, compiled):
    # The eager path runs graphs traced for any shape. RoIPool's compiled kernels take static
    # bounds from each call's concrete shape, which must not get lost in them; RoIAlign's walk
    # needs none, so one trace serves every map size. Small calls run uncompiled, one trace.
    # (An output size no other test uses, so these calls trace afresh.)
    seen = {"align": [], "pool": []}
    align_dispatch, pool_dispatch = _align_core._walk_or_contract, _pool_kernels._pool_dispatch

    def spy_align(*args, **kwargs):
        seen["align"].append(args[-1].bounds)
        return align_dispatch(*args, **kwargs)

    def spy_pool(*args, **kwargs):
        seen["pool"].append(kwargs["plan"].bounds)
        return pool_dispatch(*args, **kwargs)

    monkeypatch.setattr(_align_core, "_walk_or_contract", spy_align)
    monkeypatch.setattr(_pool_kernels, "_pool_dispatch", spy_pool)
    rng = np.random.default_rng(11)
    size = (5, 6) if compiled else (6, 5)
    with eager_compiled(compiled):
        for h, w in [(13, 17), (21, 15), (30, 31)]:
            feats = rng.normal(size=(1, h, w, 2)).astype(np.float32)
            boxes = varied_boxes(rng, 5, h, w, 1, n_img=1)
            np.testing.assert_array_equal(roi_align(feats, boxes, size).numpy(), roi_align_ref(feats, boxes, size))
            roi_pool(feats, boxes, size)
    assert seen["align"] == [None]
    if compiled:  # traced again for new sizes: the bounds follow the map
        assert len(seen["pool"]) >= 2 and None not in seen["pool"]
    else:
        assert seen["pool"] == [None]


def test_small_eager_calls_skip_compiling_and_big_ones_do():
    feats = np.zeros((1, 8, 8, 4), np.float32)
    few, many = np.zeros((3, 5), np.float32), np.zeros((-(-compile_policy.EAGER_COMPILE_MIN_OUTPUTS // (49 * 4)), 5), np.float32)
    assert not compile_policy.worth_compiling(feats, few, 7, 7)
    assert compile_policy.worth_compiling(feats, many, 7, 7)
