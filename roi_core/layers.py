"""Keras 3 layers wrapping the operators, with the tutorial's interface.

``call([feature_map, rois])``: ``feature_map`` ``(B, H, W, C)``, ``rois`` ``(B, N, 4)`` relative
``(x_min, y_min, x_max, y_max)`` in ``[0, 1]``; output ``(B, N, ph, pw, C)``.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from .boxes import normalize_output_size, validate_sampling_ratio
from .ops import multi_scale_roi_align, ps_roi_align, ps_roi_pool, roi_align, roi_pool


def require_tensorflow_backend(layer_name: str) -> None:
    """The operators are TensorFlow code: under another Keras backend they cannot run."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{layer_name} needs the TensorFlow Keras backend, but Keras runs on {backend!r}: "
            "set KERAS_BACKEND=tensorflow before importing keras"
        )


def _operator_boxes(feature_map, rois, end_offset):
    """(B, N, 4) relative -> (B*N, 5) operator rows on the feature grid (spatial_scale 1)."""
    shape = tf.shape(feature_map)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    rois = tf.cast(rois, tf.float32)
    n_img, n_roi = tf.shape(rois)[0], tf.shape(rois)[1]
    scale = tf.stack([width, height, width, height])
    pixels = rois * scale - tf.constant([0.0, 0.0, end_offset, end_offset])
    index = tf.cast(tf.repeat(tf.range(n_img), n_roi), tf.float32)[:, None]
    return tf.concat([index, tf.reshape(pixels, [-1, 4])], axis=1), n_img, n_roi


class _RoILayer(keras.layers.Layer):
    """Shared plumbing: relative RoIs -> operator boxes -> ``(B, N, ph, pw, C)``."""

    # Subtracted from x_max*W and y_max*H: RoIPool's end is inclusive, RoIAlign's is not.
    end_offset = 0.0

    def __init__(self, pooled_height, pooled_width, **kwargs):
        require_tensorflow_backend(type(self).__name__)
        super().__init__(**kwargs)
        self.pooled_height, self.pooled_width = normalize_output_size((pooled_height, pooled_width), "pooled size")

    def _check_inputs(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f"{type(self).__name__} expects [feature_map, rois], got {type(inputs).__name__}")

    def _out_channels(self, channels):
        return channels

    def compute_output_shape(self, input_shape):
        fm_shape, rois_shape = input_shape
        channels = None if fm_shape[3] is None else self._out_channels(fm_shape[3])
        return (fm_shape[0], rois_shape[1], self.pooled_height, self.pooled_width, channels)

    def _pool(self, feature_map, boxes):
        raise NotImplementedError

    def call(self, inputs):
        self._check_inputs(inputs)
        feature_map, rois = inputs
        boxes, n_img, n_roi = _operator_boxes(feature_map, rois, self.end_offset)
        pooled = self._pool(feature_map, boxes)
        channels = tf.shape(pooled)[3]
        out = tf.reshape(pooled, tf.stack([n_img, n_roi, self.pooled_height, self.pooled_width, channels]))
        if feature_map.shape[-1] is not None:
            out = tf.ensure_shape(out, [None, None, self.pooled_height, self.pooled_width, self._out_channels(feature_map.shape[-1])])
        return out

    def get_config(self):
        config = super().get_config()
        config.update(pooled_height=self.pooled_height, pooled_width=self.pooled_width)
        return config


@keras.saving.register_keras_serializable(package="roi_core")
class ROIPoolingLayer(_RoILayer):
    """RoI max pooling (Fast R-CNN) of relative RoIs.

    A relative RoI maps to ``roi_pool`` on ``(x_min*W, y_min*H, x_max*W - 1, y_max*H - 1)`` of
    the feature grid, so the whole-image RoI ``[0, 0, 1, 1]`` equals ``max_pool2d`` when the
    grid divides the map.

    Args:
      pooled_height: output rows ``ph`` (a positive int).
      pooled_width: output columns ``pw`` (a positive int).
      **kwargs: standard ``keras.layers.Layer`` arguments (``name``, ...).

    Call arguments:
      inputs: ``[feature_map, rois]``: ``(B, H, W, C)`` features and ``(B, N, 4)`` relative
        ``(x_min, y_min, x_max, y_max)`` RoIs.

    Returns:
      ``(B, N, ph, pw, C)`` float32 tensor.

    Example:

    >>> feature_map = keras.Input(shape=(None, None, 256))
    >>> rois = keras.Input(shape=(None, 4))
    >>> pooled = ROIPoolingLayer(7, 7)([feature_map, rois])  # (batch, N, 7, 7, 256)
    """

    end_offset = 1.0

    def _pool(self, feature_map, boxes):
        return roi_pool(feature_map, boxes, (self.pooled_height, self.pooled_width), 1.0)


@keras.saving.register_keras_serializable(package="roi_core")
class ROIAlignLayer(_RoILayer):
    """RoIAlign (``aligned=True``) of relative RoIs.

    A relative RoI maps to ``roi_align`` on ``(x_min*W, y_min*H, x_max*W, y_max*H)`` of the
    feature grid, so the whole-image RoI equals ``avg_pool2d`` when the grid divides the map.

    Args:
      pooled_height: output rows ``ph`` (a positive int).
      pooled_width: output columns ``pw`` (a positive int).
      sampling_ratio: bilinear samples per bin along each axis; ``<= 0`` is adaptive.
      **kwargs: standard ``keras.layers.Layer`` arguments (``name``, ...).

    Call arguments:
      inputs: ``[feature_map, rois]`` as for ``ROIPoolingLayer``.

    Returns:
      ``(B, N, ph, pw, C)`` float32 tensor.

    Example:

    >>> feature_map = keras.Input(shape=(None, None, 256))
    >>> rois = keras.Input(shape=(None, 4))
    >>> pooled = ROIAlignLayer(7, 7, sampling_ratio=2)([feature_map, rois])
    """

    def __init__(self, pooled_height, pooled_width, sampling_ratio=-1, **kwargs):
        super().__init__(pooled_height, pooled_width, **kwargs)
        self.sampling_ratio = validate_sampling_ratio(sampling_ratio)

    def _pool(self, feature_map, boxes):
        return roi_align(
            feature_map, boxes, (self.pooled_height, self.pooled_width), 1.0, self.sampling_ratio, aligned=True
        )

    def get_config(self):
        config = super().get_config()
        config.update(sampling_ratio=self.sampling_ratio)
        return config


class _PositionSensitive:
    """Output channels: one per group of ``ph * pw`` input channels."""

    def _out_channels(self, channels):
        return channels // (self.pooled_height * self.pooled_width)


@keras.saving.register_keras_serializable(package="roi_core")
class PSROIPoolingLayer(_PositionSensitive, _RoILayer):
    """Position-sensitive RoI average pooling (R-FCN) of relative RoIs.

    A relative RoI maps to ``ps_roi_pool`` on ``(x_min*W, y_min*H, x_max*W, y_max*H)`` of the
    feature grid.

    Args:
      pooled_height: output rows ``ph`` (a positive int).
      pooled_width: output columns ``pw`` (a positive int).
      **kwargs: standard ``keras.layers.Layer`` arguments (``name``, ...).

    Call arguments:
      inputs: ``[feature_map, rois]``: ``(B, H, W, ph * pw * C_out)`` features and
        ``(B, N, 4)`` relative RoIs.

    Returns:
      ``(B, N, ph, pw, C_out)`` float32 tensor.

    Example:

    >>> scores = keras.Input(shape=(None, None, 7 * 7 * 21))
    >>> rois = keras.Input(shape=(None, 4))
    >>> pooled = PSROIPoolingLayer(7, 7)([scores, rois])  # (batch, N, 7, 7, 21)
    """

    def _pool(self, feature_map, boxes):
        return ps_roi_pool(feature_map, boxes, (self.pooled_height, self.pooled_width), 1.0)


@keras.saving.register_keras_serializable(package="roi_core")
class PSROIAlignLayer(_PositionSensitive, ROIAlignLayer):
    """Position-sensitive RoIAlign (R-FCN) of relative RoIs.

    A relative RoI maps to ``ps_roi_align`` on ``(x_min*W, y_min*H, x_max*W, y_max*H)`` of the
    feature grid (half-pixel aligned, as ``ROIAlignLayer``).

    Args:
      pooled_height: output rows ``ph`` (a positive int).
      pooled_width: output columns ``pw`` (a positive int).
      sampling_ratio: bilinear samples per bin along each axis; ``<= 0`` is adaptive.
      **kwargs: standard ``keras.layers.Layer`` arguments (``name``, ...).

    Call arguments:
      inputs: ``[feature_map, rois]`` as for ``PSROIPoolingLayer``.

    Returns:
      ``(B, N, ph, pw, C_out)`` float32 tensor.

    Example:

    >>> scores = keras.Input(shape=(None, None, 3 * 3 * 8))
    >>> rois = keras.Input(shape=(None, 4))
    >>> pooled = PSROIAlignLayer(3, 3, sampling_ratio=2)([scores, rois])  # (batch, N, 3, 3, 8)
    """

    def _pool(self, feature_map, boxes):
        return ps_roi_align(feature_map, boxes, (self.pooled_height, self.pooled_width), 1.0, self.sampling_ratio)


@keras.saving.register_keras_serializable(package="roi_core")
class MultiScaleROIAlignLayer(keras.layers.Layer):
    """Multi-scale RoIAlign (FPN) of relative RoIs over several feature maps.

    A relative RoI maps to ``multi_scale_roi_align`` on the pixel box
    ``(x_min*W, y_min*H, x_max*W, y_max*H)`` of an ``image_size`` image.

    Args:
      pooled_height: output rows ``ph`` (a positive int).
      pooled_width: output columns ``pw`` (a positive int).
      image_size: ``(H, W)`` of the input image (the maps' scales are inferred from it).
      sampling_ratio: bilinear samples per bin along each axis (torchvision's default 2).
      canonical_scale: the level mapper's canonical box size (224).
      canonical_level: the level of a canonical box (4).
      **kwargs: standard ``keras.layers.Layer`` arguments (``name``, ...).

    Call arguments:
      inputs: ``[map_0, ..., map_L-1, rois]``: ``(B, H_l, W_l, C)`` maps, finest first, with
        static heights, and ``(B, N, 4)`` relative RoIs.

    Returns:
      ``(B, N, ph, pw, C)`` float32 tensor.

    Example:

    >>> image = keras.Input(shape=(256, 256, 3))
    >>> p2 = keras.layers.Conv2D(8, 3, strides=4, padding="same")(image)
    >>> p3 = keras.layers.Conv2D(8, 3, strides=2, padding="same")(p2)
    >>> rois = keras.Input(shape=(None, 4))
    >>> pooled = MultiScaleROIAlignLayer(7, 7, image_size=(256, 256))([p2, p3, rois])
    """

    def __init__(self, pooled_height, pooled_width, image_size, sampling_ratio=2, canonical_scale=224, canonical_level=4, **kwargs):
        require_tensorflow_backend(type(self).__name__)
        super().__init__(**kwargs)
        self.pooled_height, self.pooled_width = normalize_output_size((pooled_height, pooled_width), "pooled size")
        size = tuple(int(v) for v in image_size)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"image_size must be a positive (height, width), got {image_size!r}")
        self.image_size = size
        self.sampling_ratio = validate_sampling_ratio(sampling_ratio)
        self.canonical_scale, self.canonical_level = int(canonical_scale), int(canonical_level)

    def compute_output_shape(self, input_shape):
        rois_shape = input_shape[-1]
        return (input_shape[0][0], rois_shape[1], self.pooled_height, self.pooled_width, input_shape[0][3])

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError(f"{type(self).__name__} expects [map_0, ..., map_L-1, rois], got {type(inputs).__name__}")
        *maps, rois = inputs
        rois = tf.cast(rois, tf.float32)
        n_img, n_roi = tf.shape(rois)[0], tf.shape(rois)[1]
        h, w = (float(v) for v in self.image_size)
        pixels = tf.reshape(rois * tf.constant([w, h, w, h]), [-1, 4])
        index = tf.cast(tf.repeat(tf.range(n_img), n_roi), tf.float32)[:, None]
        pooled = multi_scale_roi_align(
            list(maps), tf.concat([index, pixels], axis=1), (self.pooled_height, self.pooled_width),
            self.image_size, self.sampling_ratio, self.canonical_scale, self.canonical_level,
        )
        out = tf.reshape(pooled, tf.stack([n_img, n_roi, self.pooled_height, self.pooled_width, tf.shape(pooled)[3]]))
        if maps[0].shape[-1] is not None:
            out = tf.ensure_shape(out, [None, None, self.pooled_height, self.pooled_width, maps[0].shape[-1]])
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            pooled_height=self.pooled_height, pooled_width=self.pooled_width, image_size=list(self.image_size),
            sampling_ratio=self.sampling_ratio, canonical_scale=self.canonical_scale, canonical_level=self.canonical_level,
        )
        return config
