import numpy as np
import pytest
import keras

from roi_core import backbones


def _image(h=64, w=80, seed=0):
    return (np.random.default_rng(seed).uniform(0, 255, size=(h, w, 3))).astype(np.uint8)


def test_pixels_is_the_image_at_stride_one():
    img = _image()
    f = backbones.get_extractor("pixels").extract(img)
    assert f.features.shape == (1, 64, 80, 3) and f.stride == 1.0
    np.testing.assert_allclose(f.features[0], img / 255.0, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_filters_shapes_strides_and_determinism(stride):
    ext = backbones.get_extractor("filters")
    img = _image()
    a = ext.extract(img, f"stride {stride}")
    b = ext.extract(img.copy(), f"stride {stride}")
    assert a.features.shape == (1, 64 // stride, 80 // stride, len(a.channel_names))
    assert a.stride == stride and len(a.channel_names) >= 16
    np.testing.assert_array_equal(a.features, b.features)
    assert np.all(np.isfinite(a.features))


def test_filters_respond_to_orientation():
    # Vertical stripes excite d/dx, not d/dy.
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, ::4] = 255
    f = backbones.get_extractor("filters").extract(img, "stride 1")
    names = f.channel_names
    dx = np.abs(f.features[0, :, :, names.index("d/dx s1")]).mean()
    dy = np.abs(f.features[0, :, :, names.index("d/dy s1")]).mean()
    assert dx > 10 * dy


def test_grayscale_and_rgba_images_are_accepted():
    ext = backbones.get_extractor("pixels")
    assert ext.extract(np.zeros((5, 6), np.uint8)).features.shape == (1, 5, 6, 3)
    assert ext.extract(np.zeros((5, 6, 4), np.uint16)).features.shape == (1, 5, 6, 3)


def test_user_model_any_layer_and_stride():
    inp = keras.Input(shape=(None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c1")(inp)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="c2")(x)
    out = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    ext = backbones.ModelExtractor(keras.Model(inp, out), name="tiny")
    assert ext.layers() == ["c1", "c2"]
    f = ext.extract(_image(64, 80), "c2")
    assert f.features.shape == (1, 16, 20, 6) and f.stride == 4.0
    with pytest.raises(ValueError, match="layer"):
        ext.extract(_image(), "gap")


def test_offline_weights_give_a_clear_message(monkeypatch):
    def fail(**kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "VGG16", fail)
    with pytest.raises(backbones.WeightsUnavailable, match=r"VGG16.*\.keras/models"):
        backbones.keras_application("vgg16")


def test_keras_application_layers_without_weights():
    ext = backbones.keras_application("mobilenet_v2", weights=None)
    assert "block_3_expand_relu" in ext.layers()
    f = ext.extract(_image(64, 64), "block_3_expand_relu")
    assert f.stride == 4.0


def test_unknown_extractor():
    with pytest.raises(ValueError, match="extractor must be one of"):
        backbones.get_extractor("nope")
