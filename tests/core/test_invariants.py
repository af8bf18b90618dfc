import numpy as np
import pytest
import tensorflow as tf

from roi_core import roi_align, roi_pool


def test_whole_map_box_is_max_pool_and_avg_pool():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(1, 12, 18, 4)).astype(np.float32)
    h, w = 12, 18
    pooled = roi_pool(feats, [[0, 0, 0, w - 1, h - 1]], (4, 6)).numpy()[0]
    np.testing.assert_allclose(pooled, tf.nn.max_pool2d(feats, (3, 3), (3, 3), "VALID").numpy()[0])
    aligned = roi_align(feats, [[0, -0.0, 0, w, h]], (4, 6), aligned=True).numpy()[0]
    np.testing.assert_allclose(aligned, tf.nn.avg_pool2d(feats, (3, 3), (3, 3), "VALID").numpy()[0], atol=1e-6)


def test_one_by_one_output_is_the_block_maximum():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(1, 10, 10, 3)).astype(np.float32)
    got = roi_pool(feats, [[0, 2, 3, 6, 8]], 1).numpy()[0, 0, 0]
    np.testing.assert_allclose(got, feats[0, 3:9, 2:7].max(axis=(0, 1)))


@pytest.mark.parametrize("op", ["pool", "align"])
def test_degenerate_boxes_never_give_nan_or_inf(op):
    feats = -np.abs(np.random.default_rng(2).normal(size=(1, 6, 7, 2)).astype(np.float32)) - 5.0
    boxes = np.array(
        [[0, 3, 3, 3, 3], [0, 5, 5, 1, 1], [0, -40, -40, -30, -30], [0, 300, 300, 400, 400], [0, 0, 0, 0, 0]],
        np.float32,
    )
    for scale in (1.0, 0.25):
        out = roi_pool(feats, boxes, 3, scale) if op == "pool" else roi_align(feats, boxes, 3, scale, aligned=True)
        assert np.all(np.isfinite(out.numpy()))
    # Boxes fully outside the map pool to zero.
    outside = roi_pool(feats, boxes[2:4], 2).numpy() if op == "pool" else roi_align(feats, boxes[2:4], 2).numpy()
    assert np.all(outside == 0.0)


@pytest.mark.parametrize("fn", [roi_pool, roi_align])
def test_no_boxes_gives_empty_output(fn):
    feats = np.zeros((2, 5, 5, 3), np.float32)
    out = fn(feats, np.zeros((0, 5), np.float32), (2, 4))
    assert tuple(out.shape) == (0, 2, 4, 3)
    graph = tf.function(lambda f, b: fn(f, b, (2, 4)))
    assert tuple(graph(feats, np.zeros((0, 5), np.float32)).shape) == (0, 2, 4, 3)


def test_batch_index_selects_the_image():
    feats = np.stack([np.full((4, 4, 1), 1.0), np.full((4, 4, 1), 2.0)]).astype(np.float32)
    boxes = [[1, 0, 0, 3, 3], [0, 0, 0, 3, 3]]
    np.testing.assert_array_equal(roi_pool(feats, boxes, 1).numpy().ravel(), [2.0, 1.0])
    np.testing.assert_allclose(roi_align(feats, boxes, 1).numpy().ravel(), [2.0, 1.0], rtol=1e-6)


def test_output_is_float32_for_integer_features():
    feats = np.arange(16, dtype=np.int32).reshape(1, 4, 4, 1)
    out = roi_pool(feats, [[0, 0, 0, 3, 3]], 2)
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy()[0, :, :, 0], [[5, 7], [13, 15]])
