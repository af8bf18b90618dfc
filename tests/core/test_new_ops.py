"""ps_roi_pool, ps_roi_align and multi_scale_roi_align against NumPy loops written from
torchvision's kernels (reference.py), in every call mode, with gradients and bad input."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from roi_core import (
    MultiScaleROIAlignLayer,
    PSROIAlignLayer,
    PSROIPoolingLayer,
    multi_scale_levels,
    multi_scale_roi_align,
    ps_roi_align,
    ps_roi_pool,
)
from roi_core.reference import (
    level_mapper_ref,
    multi_scale_roi_align_ref,
    ps_roi_align_ref,
    ps_roi_pool_ref,
)
from tests.core.compile_modes import MODES, gradient_in_mode, run_in_mode
from tests.core.test_ops_reference import EDGE_BOXES

ATOL = 1e-5


def _ps_case(seed, ph=3, pw=2, c_out=2, n_img=2, h=11, w=14, k=20):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n_img, h, w, ph * pw * c_out)).astype(np.float32)
    xy = rng.uniform(-20, 90, size=(k, 4)).astype(np.float32)
    idx = rng.integers(0, n_img, size=(k, 1)).astype(np.float32)
    return feats, np.concatenate([np.concatenate([idx, xy], axis=1), EDGE_BOXES]).astype(np.float32)


def test_channel_index_is_torchvisions_nchw_index():
    # One hot input channel (c * ph + p) * pw + q must show up in output channel c of bin (p, q)
    # only: a map of ones in that channel alone.
    ph, pw, c_out = 2, 3, 2
    for c in range(c_out):
        for p in range(ph):
            for q in range(pw):
                feats = np.zeros((1, 6, 6, ph * pw * c_out), np.float32)
                feats[..., (c * ph + p) * pw + q] = 1.0
                for out in (ps_roi_pool(feats, [[0, 0, 0, 6, 6]], (ph, pw)), ps_roi_align(feats, [[0, 0, 0, 6, 6]], (ph, pw))):
                    want = np.zeros((1, ph, pw, c_out), np.float32)
                    want[0, p, q, c] = 1.0
                    np.testing.assert_allclose(out.numpy(), want, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", [1.0, 0.25, 1 / 3])
def test_ps_roi_pool_matches_reference(mode, scale):
    feats, boxes = _ps_case(1)
    got = run_in_mode(mode, lambda f, b: ps_roi_pool(f, b, (3, 2), scale), feats, boxes)
    np.testing.assert_allclose(got, ps_roi_pool_ref(feats, boxes, (3, 2), scale), atol=ATOL)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_ps_roi_align_matches_reference(mode, sampling_ratio, scale):
    feats, boxes = _ps_case(2)
    got = run_in_mode(mode, lambda f, b: ps_roi_align(f, b, (3, 2), scale, sampling_ratio), feats, boxes)
    np.testing.assert_allclose(got, ps_roi_align_ref(feats, boxes, (3, 2), scale, sampling_ratio), atol=ATOL)


def _adjoint(ref, feats, upstream, *args):
    """The reference ops are linear in the features: the gradient is A^T upstream, with A from
    one-hot "features" (one channel group per input position and channel)."""
    n_img, h, w, c = feats.shape
    cols = []
    for i in range(n_img * h * w * c):
        onehot = np.zeros(n_img * h * w * c, np.float32)
        onehot[i] = 1.0
        cols.append(np.sum(ref(onehot.reshape(feats.shape), *args) * upstream))
    return np.array(cols, np.float32).reshape(feats.shape)


@pytest.mark.parametrize("mode", MODES)
def test_ps_gradients_are_the_adjoint(mode):
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(1, 5, 6, 4)).astype(np.float32)
    boxes = np.array([[0, 0.5, 1, 5, 4.5], [0, -2, -1, 3, 8], [0, 1, 1, 1, 1]], np.float32)
    upstream = rng.normal(size=(3, 2, 2, 1)).astype(np.float32)
    for op, ref, args in [(ps_roi_pool, ps_roi_pool_ref, (2, 1.0)), (ps_roi_align, ps_roi_align_ref, (2, 1.0, 2))]:
        got = gradient_in_mode(mode, lambda x: op(x, boxes, *args), feats, upstream)
        want = _adjoint(lambda f, *a: ref(f, boxes, *a), feats, upstream, *args)
        np.testing.assert_allclose(got, want, atol=1e-5)


def _fpn_case(seed, k=40):
    rng = np.random.default_rng(seed)
    image = (256, 320)
    maps = [rng.normal(size=(2, 256 // s, 320 // s, 3)).astype(np.float32) for s in (4, 8, 16, 32)]
    side = np.exp(rng.uniform(np.log(2), np.log(300), size=(k, 2)))
    x1, y1 = rng.uniform(-10, 300, k), rng.uniform(-10, 240, k)
    boxes = np.stack([rng.integers(0, 2, k), x1, y1, x1 + side[:, 0], y1 + side[:, 1]], 1).astype(np.float32)
    extra = np.array([[0, 10, 10, 5, 40], [1, 0, 0, 0, 0], [1, 40, 40, 40 + 112, 40 + 112]], np.float32)
    return maps, np.concatenate([boxes, extra]), image


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_multi_scale_roi_align_matches_reference(mode, sampling_ratio):
    maps, boxes, image = _fpn_case(4)
    want = multi_scale_roi_align_ref(maps, boxes, (7, 5), image, sampling_ratio, canonical_scale=64)
    fn = lambda b, *m: multi_scale_roi_align(list(m), b, (7, 5), image, sampling_ratio, canonical_scale=64)  # noqa: E731
    got = run_in_mode(mode, fn, boxes, *maps)
    np.testing.assert_allclose(got, want, atol=ATOL)


def test_multi_scale_levels_follow_torchvisions_level_mapper():
    maps, boxes, image = _fpn_case(5)
    shapes = [m.shape for m in maps]
    levels = multi_scale_levels(boxes, shapes, image, canonical_scale=64)
    want = level_mapper_ref(boxes[:, 1:], 2, 5, canonical_scale=64)
    np.testing.assert_array_equal(levels, want)
    assert set(levels.tolist()) >= {0, 1, 2, 3, -1}  # every map, and the inverted box
    # A 112-pixel box sits at canonical level 4 - 1 = 3 with the default 224: the map of stride 8.
    assert multi_scale_levels([[0, 0, 112, 112]], shapes, image)[0] == 1
    assert multi_scale_levels([[0, 0, 112, 112]], [1 / 4, 1 / 8, 1 / 16, 1 / 32], image)[0] == 1
    np.testing.assert_array_equal(multi_scale_levels(boxes[:, 1:], shapes, image, canonical_scale=64), levels)


def test_one_level_is_plain_roi_align():
    maps, boxes, image = _fpn_case(6, k=10)
    got = multi_scale_roi_align(maps[1:2], boxes, 3, image).numpy()
    np.testing.assert_allclose(got, multi_scale_roi_align_ref(maps[1:2], boxes, 3, image), atol=ATOL)


def test_multi_scale_gradient_reaches_only_the_chosen_level():
    maps, boxes, image = _fpn_case(7, k=6)
    xs = [tf.constant(m) for m in maps]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        out = multi_scale_roi_align(xs, boxes, 2, image, canonical_scale=64)
        total = tf.reduce_sum(out)
    grads = tape.gradient(total, xs)
    levels = multi_scale_levels(boxes, [m.shape for m in maps], image, canonical_scale=64)
    pooled = np.abs(out.numpy()).sum(axis=(1, 2, 3))
    assert len(set(levels[pooled > 0].tolist())) >= 2
    for level, g in enumerate(grads):
        reached = g is not None and np.abs(g.numpy()).sum() > 0
        assert reached == bool(np.any(pooled[levels == level] > 0)), level


@pytest.mark.parametrize("fn", [ps_roi_pool, ps_roi_align])
def test_ps_no_boxes_and_unknown_box_count(fn):
    feats, boxes = _ps_case(8, ph=2, pw=2, c_out=3)
    assert tuple(fn(feats, np.zeros((0, 5), np.float32), 2).shape) == (0, 2, 2, 3)
    spec = [tf.TensorSpec([2, 11, 14, 12]), tf.TensorSpec([None, 5])]
    for jit in (False, True):
        graph = tf.function(lambda f, b: fn(f, b, 2), input_signature=spec, jit_compile=jit)
        np.testing.assert_allclose(graph(feats, boxes).numpy(), fn(feats, boxes, 2).numpy(), atol=ATOL)
        assert tuple(graph(feats, boxes[:0]).shape) == (0, 2, 2, 3)


def test_new_ops_bad_input():
    feats = np.zeros((1, 5, 5, 8), np.float32)
    with pytest.raises(ValueError, match="multiple of ph \\* pw = 9 channels"):
        ps_roi_pool(feats, [[0, 0, 0, 2, 2]], 3)
    with pytest.raises(ValueError, match="multiple of ph \\* pw"):
        ps_roi_align(feats, [[0, 0, 0, 2, 2]], 3)
    with pytest.raises(ValueError, match="batch_index"):
        ps_roi_align(feats, [[1, 0, 0, 2, 2]], 2)
    with pytest.raises(ValueError, match="boxes must be finite"):
        multi_scale_roi_align([feats], [[0, np.nan, 0, 2, 2]], 2, (20, 20))
    with pytest.raises(ValueError, match="features must be a non-empty list"):
        multi_scale_roi_align(feats, [[0, 0, 0, 2, 2]], 2, (20, 20))
    with pytest.raises(ValueError, match="same number of channels"):
        multi_scale_roi_align([feats, np.zeros((1, 3, 3, 4), np.float32)], [[0, 0, 0, 2, 2]], 2, (20, 20))
    with pytest.raises(ValueError, match="image_size"):
        multi_scale_roi_align([feats], [[0, 0, 0, 2, 2]], 2, (20,))


def test_layers_round_trip_and_map_onto_the_ops(tmp_path):
    image = keras.Input(shape=(64, 64, 3))
    rois_in = keras.Input(shape=(3, 4))
    p2 = keras.layers.Conv2D(8, 3, strides=4, padding="same")(image)
    p3 = keras.layers.Conv2D(8, 3, strides=2, padding="same")(p2)
    ps_pool = PSROIPoolingLayer(2, 2, name="ps_pool")([p2, rois_in])
    ps_align = PSROIAlignLayer(2, 2, sampling_ratio=2, name="ps_align")([p2, rois_in])
    multi = MultiScaleROIAlignLayer(3, 3, image_size=(64, 64), canonical_scale=32, name="multi")([p2, p3, rois_in])
    assert tuple(ps_pool.shape) == (None, 3, 2, 2, 2) and tuple(multi.shape) == (None, 3, 3, 3, 8)
    model = keras.Model([image, rois_in], [ps_pool, ps_align, multi])
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
    corners = np.sort(rng.uniform(0, 1, size=(2, 3, 2, 2)), axis=2)
    rois = np.concatenate([corners[:, :, 0], corners[:, :, 1]], axis=-1).astype(np.float32)
    before = model.predict([x, rois], verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    after = keras.saving.load_model(path).predict([x, rois], verbose=0)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
    # The layer is the op on pixel boxes of the 64x64 image.
    features = keras.Model(image, [p2, p3]).predict(x, verbose=0)
    px = (rois * 64).reshape(-1, 4)
    boxes = np.concatenate([np.repeat(np.arange(2), 3)[:, None], px], axis=1).astype(np.float32)
    want = multi_scale_roi_align(list(features), boxes, 3, (64, 64), 2, canonical_scale=32).numpy()
    np.testing.assert_allclose(before[2].reshape(6, 3, 3, 8), want, atol=1e-5)
    grid = features[0].shape[1] / 64
    want_ps = ps_roi_pool(features[0], np.concatenate([boxes[:, :1], px * grid], 1), 2).numpy()
    np.testing.assert_allclose(before[0].reshape(6, 2, 2, 2), want_ps, atol=1e-6)
