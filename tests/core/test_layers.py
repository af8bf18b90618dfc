import numpy as np
import pytest
import keras
import tensorflow as tf

from roi_core import ROIAlignLayer, ROIPoolingLayer, roi_align, roi_pool


def _inputs(seed=0, n_img=2, n_roi=3, h=8, w=10, c=4):
    rng = np.random.default_rng(seed)
    fm = rng.normal(size=(n_img, h, w, c)).astype(np.float32)
    a = rng.uniform(0, 1, size=(n_img, n_roi, 2, 2))
    lo, hi = a.min(axis=2), a.max(axis=2)
    rois = np.concatenate([lo, hi], axis=-1).astype(np.float32)  # (x_min, y_min, x_max, y_max)
    return fm, rois


def test_layers_map_onto_the_ops():
    fm, rois = _inputs()
    n_img, n_roi = rois.shape[:2]
    h, w = fm.shape[1:3]
    scale = np.array([w, h, w, h], np.float32)
    px = (rois * scale).reshape(-1, 4)
    idx = np.repeat(np.arange(n_img), n_roi)[:, None].astype(np.float32)
    pool_boxes = np.concatenate([idx, px - [0, 0, 1, 1]], axis=1)
    align_boxes = np.concatenate([idx, px], axis=1)
    got = ROIPoolingLayer(3, 2)([fm, rois]).numpy()
    np.testing.assert_allclose(got, roi_pool(fm, pool_boxes, (3, 2)).numpy().reshape(n_img, n_roi, 3, 2, 4))
    got = ROIAlignLayer(3, 2, sampling_ratio=2)([fm, rois]).numpy()
    want = roi_align(fm, align_boxes, (3, 2), 1.0, 2, aligned=True).numpy().reshape(n_img, n_roi, 3, 2, 4)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_whole_image_roi_equals_pooling():
    fm, _ = _inputs(n_img=1, h=8, w=10)
    whole = np.array([[[0, 0, 1, 1]]], np.float32)
    np.testing.assert_allclose(
        ROIPoolingLayer(4, 5)([fm, whole]).numpy()[0, 0], tf.nn.max_pool2d(fm, 2, 2, "VALID").numpy()[0]
    )
    np.testing.assert_allclose(
        ROIAlignLayer(4, 5)([fm, whole]).numpy()[0, 0], tf.nn.avg_pool2d(fm, 2, 2, "VALID").numpy()[0], atol=1e-6
    )


@pytest.mark.parametrize("cls", [ROIPoolingLayer, ROIAlignLayer])
def test_symbolic_shapes_and_compute_output_shape(cls):
    fm_in = keras.Input(shape=(None, None, 6))
    rois_in = keras.Input(shape=(None, 4))
    out = cls(2, 3)([fm_in, rois_in])
    assert tuple(out.shape) == (None, None, 2, 3, 6)
    assert cls(2, 3).compute_output_shape(((4, 8, 8, 6), (4, 5, 4))) == (4, 5, 2, 3, 6)
    model = keras.Model([fm_in, rois_in], out)
    fm, rois = _inputs(c=6)
    assert model.predict([fm, rois], verbose=0).shape == (2, 3, 2, 3, 6)


def test_model_save_and_load_round_trip(tmp_path):
    image = keras.Input(shape=(16, 16, 3))
    rois_in = keras.Input(shape=(4, 4))
    fm = keras.layers.Conv2D(5, 3, strides=2, padding="same")(image)
    pooled = ROIPoolingLayer(2, 2, name="pool")([fm, rois_in])
    aligned = ROIAlignLayer(3, 3, sampling_ratio=2, name="align")([fm, rois_in])
    model = keras.Model([image, rois_in], [pooled, aligned])
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    _, rois = _inputs(n_img=2, n_roi=4)
    before = model.predict([x, rois], verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    after = loaded.predict([x, rois], verbose=0)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert loaded.get_layer("align").get_config()["sampling_ratio"] == 2
    assert loaded.get_layer("pool").get_config()["pooled_height"] == 2


def test_layer_gradients_and_jit_training_step():
    image = keras.Input(shape=(12, 12, 2))
    rois_in = keras.Input(shape=(3, 4))
    fm = keras.layers.Conv2D(3, 3, padding="same")(image)
    pooled = ROIPoolingLayer(2, 2)([fm, rois_in])
    aligned = ROIAlignLayer(2, 2)([fm, rois_in])
    merged = keras.layers.Concatenate()([keras.layers.Flatten()(pooled), keras.layers.Flatten()(aligned)])
    model = keras.Model([image, rois_in], keras.layers.Dense(1)(merged))
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 12, 12, 2)).astype(np.float32)
    _, rois = _inputs(n_img=4, n_roi=3)
    y = rng.normal(size=(4, 1)).astype(np.float32)
    kernel_before = model.layers[1].kernel.numpy().copy()
    history = model.fit([x, rois], y, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert not np.allclose(model.layers[1].kernel.numpy(), kernel_before)  # gradients reached the conv


@pytest.mark.parametrize("cls", [ROIPoolingLayer, ROIAlignLayer])
def test_other_keras_backend_gives_a_clear_error(monkeypatch, cls):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match="TensorFlow Keras backend.*'jax'"):
        cls(2, 2)
