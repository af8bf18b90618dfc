"""Keras 3 layers wrapping the operators, with the tutorial's interface.

``call([feature_map, rois])``: ``feature_map`` ``(B, H, W, C)``, ``rois`` ``(B, N, 4)`` relative
``(x_min, y_min, x_max, y_max)`` in ``[0, 1]``; output ``(B, N, ph, pw, C)``.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from .boxes import normalize_output_size, validate_sampling_ratio
from .ops import roi_align, roi_pool


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
    def __init__(self, pooled_height, pooled_width, **kwargs):
        super().__init__(**kwargs)
        self.pooled_height, self.pooled_width = normalize_output_size((pooled_height, pooled_width), "pooled size")

    def _check_inputs(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f"{type(self).__name__} expects [feature_map, rois], got {type(inputs).__name__}")

    def compute_output_shape(self, input_shape):
        fm_shape, rois_shape = input_shape
        return (fm_shape[0], rois_shape[1], self.pooled_height, self.pooled_width, fm_shape[3])

    def _pool(self, feature_map, boxes):
        raise NotImplementedError

    def call(self, inputs):
        self._check_inputs(inputs)
        feature_map, rois = inputs
        end_offset = 1.0 if isinstance(self, ROIPoolingLayer) else 0.0
        boxes, n_img, n_roi = _operator_boxes(feature_map, rois, end_offset)
        pooled = self._pool(feature_map, boxes)
        channels = tf.shape(pooled)[3]
        out = tf.reshape(pooled, tf.stack([n_img, n_roi, self.pooled_height, self.pooled_width, channels]))
        if feature_map.shape[-1] is not None:
            out = tf.ensure_shape(out, [None, None, self.pooled_height, self.pooled_width, feature_map.shape[-1]])
        return out

    def get_config(self):
        config = super().get_config()
        config.update(pooled_height=self.pooled_height, pooled_width=self.pooled_width)
        return config


@keras.saving.register_keras_serializable(package="roi_core")
class ROIPoolingLayer(_RoILayer):
    """RoI max pooling (Fast R-CNN). A relative RoI maps to
    ``roi_pool`` on ``(x_min*W, y_min*H, x_max*W - 1, y_max*H - 1)`` of the feature grid, so the
    whole-image RoI ``[0, 0, 1, 1]`` equals ``max_pool2d`` when the grid divides the map."""

    def _pool(self, feature_map, boxes):
        return roi_pool(feature_map, boxes, (self.pooled_height, self.pooled_width), 1.0)


@keras.saving.register_keras_serializable(package="roi_core")
class ROIAlignLayer(_RoILayer):
    """RoIAlign with ``aligned=True``. A relative RoI maps to
    ``roi_align`` on ``(x_min*W, y_min*H, x_max*W, y_max*H)`` of the feature grid, so the
    whole-image RoI equals ``avg_pool2d`` when the grid divides the map."""

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
