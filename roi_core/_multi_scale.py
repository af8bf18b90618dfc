"""torchvision's MultiScaleRoIAlign (FPN) level choice: scales inferred from the map sizes,
boxes assigned to levels by the FPN paper's Eqn. (1), as torchvision's LevelMapper computes it."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ._numerics import div


def infer_scale(map_height: int, image_height: int) -> float:
    """The power of two nearest to ``map_height / image_height`` (log2 in float32, rounded half
    to even), as torchvision's ``_infer_scale``."""
    return float(2.0 ** float(np.round(np.log2(np.float32(float(map_height) / float(image_height))))))


def level_range(scales) -> tuple[int, int]:
    """(k_min, k_max): the FPN levels of the finest and the coarsest map."""
    return int(-np.log2(np.float32(scales[0]))), int(-np.log2(np.float32(scales[-1])))


def box_levels(boxes, k_min, k_max, canonical_scale=224, canonical_level=4, eps=1e-6):
    """Level index (0 = finest map) of each ``(K, 5)`` box, int32; -1 for a box whose area is
    negative (inverted along one axis): torchvision's NaN level matches no map."""
    x1, y1, x2, y2 = (boxes[:, i] for i in range(1, 5))
    area = (x2 - x1) * (y2 - y1)
    ratio = div(tf.sqrt(area), float(canonical_scale))
    # log2 in float64, rounded once to float32: torchvision's float32 log2 (correctly rounded)
    log2 = tf.cast(tf.math.log(tf.cast(ratio, tf.float64)) / np.log(2.0), tf.float32)
    level = tf.floor(float(canonical_level) + log2 + np.float32(eps))
    valid = tf.logical_not(tf.math.is_nan(level))
    level = tf.clip_by_value(tf.where(valid, level, float(k_min)), float(k_min), float(k_max))
    return tf.where(valid, tf.cast(level, tf.int32) - k_min, -1)
