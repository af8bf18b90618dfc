"""Multi-scale RoIAlign in the application: the filter bank's strides and a Keras model's
levels make a pyramid; pooling, levels and the overlay agree with roi_core's operator."""
import keras
import numpy as np
import pytest

from app.extraction import extract_features, layer_choices
from app.inspection import Inspection
from app.pooling import MULTI_SCALE, PoolSettings, pool_boxes
from app.pyramid import PYRAMID, Pyramid, pyramid_layers
from app.regions import Box
from roi_core import multi_scale_levels, multi_scale_roi_align
from roi_core.backbones import FilterBankExtractor, ModelExtractor, PixelsExtractor


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(1)
    return (rng.random((96, 128, 3)) * 255).astype(np.uint8)


def boxes():
    # sqrt(area) from 8 to 120 px: the FPN level mapper spreads them over the four strides
    return [Box(2, 2, 10, 10, "tiny", 1), Box(10, 20, 50, 60, "small", 2), Box(0, 0, 120, 90, "big", 3)]


def test_the_filter_bank_offers_a_pyramid_and_pixels_do_not():
    assert layer_choices(FilterBankExtractor())[-1] == PYRAMID
    assert PYRAMID not in layer_choices(PixelsExtractor())


def test_pyramid_pooling_is_multi_scale_roi_align_on_the_levels(image):
    pyr = extract_features(FilterBankExtractor(), image, PYRAMID)
    assert isinstance(pyr, Pyramid) and [lvl.stride for lvl in pyr.levels] == [1.0, 2.0, 4.0, 8.0]
    corners = np.array([b.corners() for b in boxes()], np.float32)
    got = pool_boxes(pyr, corners, PoolSettings(MULTI_SCALE, (5, 5), 2))
    rows = np.concatenate([np.zeros((3, 1), np.float32), corners], axis=1)
    want = multi_scale_roi_align([lvl.features for lvl in pyr.levels], rows, 5, image.shape[:2], 2).numpy()
    np.testing.assert_array_equal(got, want)
    levels = pyr.levels_of(corners)
    np.testing.assert_array_equal(levels, multi_scale_levels(corners, [lvl.features.shape for lvl in pyr.levels], image.shape[:2]))
    assert levels[0] < levels[2]  # a small box pools from a finer level than a big one
    with pytest.raises(ValueError, match="pyramid"):
        pool_boxes(pyr.finest, corners, PoolSettings(MULTI_SCALE))


def test_inspection_offers_multi_scale_only_with_the_pyramid(image):
    insp = Inspection()
    assert "Multi-scale RoIAlign" not in insp.op_choices()
    insp.update_settings(layer=PYRAMID)
    assert "Multi-scale RoIAlign" in insp.op_choices()
    insp.set_features(extract_features(FilterBankExtractor(), image, PYRAMID))
    insp.set_boxes(boxes())
    insp.update_settings(ops=(MULTI_SCALE,), output_size=3)
    assert insp.pooled[MULTI_SCALE].shape == (3, 3, 3, insp.maps.shape[-1])
    levels = insp.levels()
    assert set(levels) == {1, 2, 3} and insp.level_text(boxes()[2]).startswith(f"level {levels[3]} (stride")
    insp.select(2)
    lines, points = insp.overlay()
    assert lines is None and len(points) > 0
    b = boxes()[1]
    assert (points[:, 0] >= b.x1).all() and (points[:, 0] <= b.x2).all()  # aligned=False samples lie inside
    insp.update_settings(layer="stride 4")  # leaving the pyramid leaves multi-scale
    assert insp.ops == ("roi_align",)


def test_a_keras_model_pyramid_is_its_last_layer_per_stride():
    inputs = keras.Input((None, None, 3))
    a = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c2a")(inputs)
    a = keras.layers.Conv2D(4, 3, padding="same", name="c2b")(a)
    b = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c3")(a)
    c = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c4")(b)
    ext = ModelExtractor(keras.Model(inputs, c), name="tiny fpn")
    assert pyramid_layers(ext) == ["c2b", "c3", "c4"]
    single = ModelExtractor(keras.Model(inputs, a), name="one stride")
    assert pyramid_layers(single) == []
    wide = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="wide")(a)  # other channels
    assert pyramid_layers(ModelExtractor(keras.Model(inputs, wide), name="backbone")) == []
