import numpy as np
import tensorflow as tf

from roi_core import roi_align, roi_pool
from roi_core.reference import roi_pool_ref


def _grad(fn, feats, upstream):
    x = tf.constant(feats)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = fn(x)
    return tape.gradient(out, x, output_gradients=tf.constant(upstream)).numpy()


def test_roi_pool_gradient_goes_to_the_first_argmax():
    rng = np.random.default_rng(0)
    # Many ties (ReLU-like zeros and repeated values) make "first maximum" matter.
    feats = np.maximum(rng.integers(-3, 3, size=(2, 9, 10, 3)), 0).astype(np.float32)
    boxes = np.array([[0, 0, 0, 8, 8], [1, 2, 1, 9, 7], [0, -3, -3, 4, 2], [1, 20, 20, 30, 30], [0, 3, 3, 3, 3]], np.float32)
    upstream = rng.normal(size=(5, 3, 2, 3)).astype(np.float32)
    got = _grad(lambda x: roi_pool(x, boxes, (3, 2)), feats, upstream)
    np.testing.assert_allclose(got, _first_argmax_gradient(feats, boxes, (3, 2), upstream), atol=1e-6)


def _first_argmax_gradient(feats, boxes, size, upstream):
    _, argmax = roi_pool_ref(feats, boxes, size, return_argmax=True)
    want = np.zeros_like(feats)
    w = feats.shape[2]
    for k, p, q, c in np.ndindex(argmax.shape):
        a = argmax[k, p, q, c]
        if a >= 0:
            want[int(boxes[k, 0]), a // w, a % w, c] += upstream[k, p, q, c]
    return want


def test_roi_pool_of_a_few_boxes_far_from_the_origin():
    # The general path builds its tables on the cells the bins span only: outputs and argmax
    # indices must still be those of the whole map (each box alone, then two far apart).
    rng = np.random.default_rng(3)
    feats = np.maximum(rng.integers(-3, 4, size=(2, 23, 31, 2)), 0).astype(np.float32)
    for boxes in ([[1, 17, 9, 25, 20]], [[0, 29, 21, 40, 40]], [[0, 3, 2, 6, 4], [1, 26, 15, 30, 22]]):
        boxes = np.array(boxes, np.float32)
        upstream = rng.normal(size=(len(boxes), 3, 3, 2)).astype(np.float32)
        np.testing.assert_array_equal(roi_pool(feats, boxes, 3).numpy(), roi_pool_ref(feats, boxes, 3))
        got = _grad(lambda x: roi_pool(x, boxes, 3), feats, upstream)  # noqa: B023
        np.testing.assert_allclose(got, _first_argmax_gradient(feats, boxes, 3, upstream), atol=1e-6)


def test_roi_align_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(1, 6, 7, 2))
    boxes = np.array([[0, 0.3, 0.7, 5.2, 4.9], [0, -1.2, 2.0, 3.3, 7.5]], np.float32)
    fn = lambda x: roi_align(x, boxes, (2, 3), 1.0, 2, True)  # noqa: E731
    theoretical, numerical = tf.test.compute_gradient(lambda x: fn(tf.cast(x, tf.float32)), [tf.constant(feats, tf.float64)])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3)


def test_gradients_under_xla():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(1, 8, 8, 2)).astype(np.float32)
    boxes = np.array([[0, 1, 1, 6, 6], [0, 0, 2, 7, 5]], np.float32)

    def both(x):
        return tf.reduce_sum(roi_pool(x, boxes, 2)) + tf.reduce_sum(roi_align(x, boxes, 2, aligned=True))

    @tf.function(jit_compile=True)
    def xla_grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = both(x)
        return tape.gradient(y, x)

    x = tf.constant(feats)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = both(x)
    np.testing.assert_allclose(xla_grad(x).numpy(), tape.gradient(y, x).numpy(), atol=1e-5)
