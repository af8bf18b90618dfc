"""The adaptive RoIAlign kernel (windows, grouping, the fallback for huge RoIs) and the static
bounds that select compiled kernels, checked against the NumPy reference."""
import numpy as np
import pytest
import tensorflow as tf

from roi_core import _align_adaptive, _align_core, _pool_kernels, compile_policy, roi_align, roi_pool
from roi_core.reference import roi_align_ref
from tests.bench.core_bench import varied_boxes
from tests.core.compile_modes import eager_compiled

ATOL = 1e-5


@pytest.mark.parametrize("aligned", [False, True])
def test_windowed_kernel_matches_reference(aligned):
    # 37 RoIs: three groups of 16, the last one padded; sizes vary so the sort matters.
    rng = np.random.default_rng(7)
    feats = rng.normal(size=(2, 19, 23, 5)).astype(np.float32)
    boxes = varied_boxes(rng, 37, 19, 23, 4, n_img=2)
    bounds = compile_policy.align_bounds(feats, 7, 5)
    fits = _align_adaptive.align_fits(tf.constant(boxes), 7, 5, 0.25, aligned, 19, 23, bounds)
    assert bool(tf.reduce_all(fits)), "every RoI inside the map must take the kernel"
    got = _align_adaptive.align_adaptive_xla(tf.constant(feats), tf.constant(boxes), 7, 5, tf.constant(0.25), aligned, bounds)
    np.testing.assert_allclose(got.numpy(), roi_align_ref(feats, boxes, (7, 5), 0.25, -1, aligned), atol=ATOL)


def test_huge_rois_leave_the_kernel_and_get_patched_in():
    rng = np.random.default_rng(8)
    feats = rng.normal(size=(1, 12, 10, 3)).astype(np.float32)
    inside = varied_boxes(rng, 20, 12, 10, 1, n_img=1)
    huge = np.array([[0, -200, -150, 300, 260], [0, -40, 2, 60, 9]], np.float32)  # both far wider than 1.5x the map
    boxes = np.concatenate([inside[:7], huge[:1], inside[7:], huge[1:]])
    bounds = compile_policy.align_bounds(feats, 3, 3)
    fits = _align_adaptive.align_fits(tf.constant(boxes), 3, 3, 1.0, False, 12, 10, bounds).numpy()
    assert fits.tolist() == [True] * 7 + [False] + [True] * 13 + [False]
    kernel = _align_adaptive.align_adaptive_xla(tf.constant(feats), tf.constant(boxes), 3, 3, tf.constant(1.0), False, bounds).numpy()
    assert not kernel[~fits].any()  # left for the general path
    want = roi_align_ref(feats, boxes, 3, 1.0, -1, False)
    for compiled in (False, True):
        with eager_compiled(compiled):
            np.testing.assert_allclose(roi_align(feats, boxes, 3, 1.0).numpy(), want, atol=ATOL)
    graph = tf.function(lambda f, b: roi_align(f, b, 3, 1.0))
    np.testing.assert_allclose(graph(feats, boxes).numpy(), want, atol=ATOL)


def test_kernel_inside_callers_xla_and_with_unknown_box_count():
    rng = np.random.default_rng(9)
    feats = rng.normal(size=(2, 16, 16, 4)).astype(np.float32)
    boxes = varied_boxes(rng, 21, 16, 16, 8, n_img=2)
    want = roi_align_ref(feats, boxes, 4, 1 / 8, -1, True)
    jit = tf.function(lambda f, b: roi_align(f, b, 4, 1 / 8, -1, True), jit_compile=True)
    np.testing.assert_allclose(jit(feats, boxes).numpy(), want, atol=ATOL)
    spec = [tf.TensorSpec([2, 16, 16, 4]), tf.TensorSpec([None, 5])]
    unknown_k = tf.function(lambda f, b: roi_align(f, b, 4, 1 / 8, -1, True), input_signature=spec)
    np.testing.assert_allclose(unknown_k(feats, boxes).numpy(), want, atol=ATOL)
    np.testing.assert_allclose(unknown_k(feats, boxes[:0]).numpy(), want[:0])
    unknown_k_jit = tf.function(lambda f, b: roi_align(f, b, 4, 1 / 8, -1, True), input_signature=spec, jit_compile=True)
    np.testing.assert_allclose(unknown_k_jit(feats, boxes).numpy(), want, atol=ATOL)
    np.testing.assert_allclose(unknown_k_jit(feats, boxes[:0]).numpy(), want[:0])


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
def test_eager_bounds_across_map_sizes(monkeypatch, compiled):
    # The eager path runs graphs traced for any shape; the bounds that select the compiled
    # kernels come from each call's concrete shape and must not get lost in them. Small calls,
    # by default, get no bounds: they run uncompiled, one trace for every map size.
    # (An output size no other test uses, so these calls trace afresh.)
    seen = {"align": [], "pool": []}
    align_dispatch, pool_dispatch = _align_core.align_adaptive_dispatch, _pool_kernels._pool_dispatch

    def spy_align(*args, **kwargs):
        seen["align"].append(kwargs["plan"].bounds)
        return align_dispatch(*args, **kwargs)

    def spy_pool(*args, **kwargs):
        seen["pool"].append(kwargs["plan"].bounds)
        return pool_dispatch(*args, **kwargs)

    monkeypatch.setattr(_align_core, "align_adaptive_dispatch", spy_align)
    monkeypatch.setattr(_pool_kernels, "_pool_dispatch", spy_pool)
    rng = np.random.default_rng(11)
    size = (5, 6) if compiled else (6, 5)
    with eager_compiled(compiled):
        for h, w in [(13, 17), (21, 15), (30, 31)]:
            feats = rng.normal(size=(1, h, w, 2)).astype(np.float32)
            boxes = varied_boxes(rng, 5, h, w, 1, n_img=1)
            np.testing.assert_allclose(roi_align(feats, boxes, size).numpy(), roi_align_ref(feats, boxes, size), atol=ATOL)
            roi_pool(feats, boxes, size)
    if compiled:  # traced again for new sizes: the bounds follow the map
        assert len(seen["pool"]) >= 2 and len(seen["align"]) >= 2
        assert None not in seen["align"] and None not in seen["pool"]
    else:  # one trace serves all three sizes
        assert seen["align"] == [] and seen["pool"] == [None]


def test_small_eager_calls_skip_compiling_and_big_ones_do():
    feats = np.zeros((1, 8, 8, 4), np.float32)
    few, many = np.zeros((3, 5), np.float32), np.zeros((-(-compile_policy.EAGER_COMPILE_MIN_OUTPUTS // (49 * 4)), 5), np.float32)
    assert not compile_policy.worth_compiling(feats, few, 7, 7)
    assert compile_policy.worth_compiling(feats, many, 7, 7)
