"""Box conventions and input validation for the RoI operators.

Conventions
-----------
* Operator boxes: ``(K, 5)`` rows ``[batch_index, x1, y1, x2, y2]`` in input-image pixels;
  ``spatial_scale`` maps them onto the feature grid (``feature = pixel * spatial_scale``).
* Layer boxes: ``(B, N, 4)`` relative ``(x_min, y_min, x_max, y_max)`` in ``[0, 1]`` of the
  feature map (equivalently of the image).
* Pixel boxes: ``(x1, y1, x2, y2)`` with ``x`` to the right and ``y`` down, origin at the
  top-left corner of the top-left pixel.

Where bins and samples fall on the grid (for display): geometry.py.

Validation turns bad input into ``ValueError`` messages that name the argument. Value checks
(NaN, batch range) run only on concrete (eager / NumPy) data: inside a traced graph the values
are not known yet, and XLA has no assertions.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def normalize_output_size(output_size, name: str = "output_size") -> tuple[int, int]:
    """``int`` or ``(ph, pw)`` -> ``(ph, pw)``; both must be positive integers."""
    if isinstance(output_size, (int, np.integer)):
        size = (int(output_size), int(output_size))
    else:
        try:
            size = tuple(int(v) for v in output_size)
        except TypeError as exc:
            raise ValueError(f"{name} must be an int or a pair (ph, pw), got {output_size!r}") from exc
        if len(size) != 2 or any(float(v) != int(v) for v in output_size):
            raise ValueError(f"{name} must be an int or a pair (ph, pw), got {output_size!r}")
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"{name} must be positive, got {output_size!r}")
    return size


def _is_concrete(x) -> bool:
    return isinstance(x, np.ndarray) or (tf.is_tensor(x) and hasattr(x, "numpy") and tf.executing_eagerly())


def validate_features(features) -> tf.Tensor:
    """Return ``features`` as a float32 tensor of rank 4 ``(B, H, W, C)``."""
    arr = None
    if not tf.is_tensor(features):
        arr = np.asarray(features)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"features must be a numeric array, got dtype {arr.dtype}")
        features = arr
    features = tf.convert_to_tensor(features)
    if not (features.dtype.is_floating or features.dtype.is_integer):
        raise ValueError(f"features must be a numeric tensor, got dtype {features.dtype.name}")
    if features.shape.rank is not None and features.shape.rank != 4:
        raise ValueError(f"features must have rank 4 (B, H, W, C), got shape {features.shape}")
    if features.shape.rank is None:
        raise ValueError("features must have a known rank of 4 (B, H, W, C)")
    if features.dtype == tf.float64 and _is_concrete(features):
        _check_fits_float32(features.numpy())
    elif features.dtype == tf.float64 and isinstance(arr, np.ndarray):  # a constant in a graph
        _check_fits_float32(arr)
    features = tf.cast(features, tf.float32)
    h, w = features.shape[1], features.shape[2]
    if (h is not None and h == 0) or (w is not None and w == 0):
        raise ValueError(f"features must have a non-empty spatial grid, got shape {features.shape}")
    return features


def _check_fits_float32(values: np.ndarray) -> None:
    """The operators compute in float32: a finite float64 value beyond its range would become
    inf there (and RoIAlign's weighted sums NaN), so it is refused instead."""
    with np.errstate(over="ignore"):
        overflow = np.isfinite(values) & ~np.isfinite(values.astype(np.float32))
    if overflow.any():
        where = tuple(int(i) for i in np.argwhere(overflow)[0])
        raise ValueError(
            f"features must fit float32 (the operators compute in float32): features{list(where)} is {values[where]:g}"
        )


def validate_boxes(boxes, num_images=None) -> tf.Tensor:
    """Return ``boxes`` as a float32 ``(K, 5)`` tensor; check values when they are concrete."""
    if not tf.is_tensor(boxes):
        arr = np.asarray(boxes)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"boxes must be a numeric array, got dtype {arr.dtype}")
        if arr.size == 0 and arr.ndim < 2:
            arr = arr.reshape(0, 5)
        boxes = arr
    boxes = tf.convert_to_tensor(boxes)
    if not (boxes.dtype.is_floating or boxes.dtype.is_integer):
        raise ValueError(f"boxes must be a numeric tensor, got dtype {boxes.dtype.name}")
    if boxes.shape.rank != 2 or (boxes.shape[1] is not None and boxes.shape[1] != 5):
        raise ValueError(f"boxes must have shape (K, 5) rows [batch_index, x1, y1, x2, y2], got shape {boxes.shape}")
    boxes = tf.cast(boxes, tf.float32)
    if _is_concrete(boxes):
        values = boxes.numpy()
        if not np.all(np.isfinite(values)):
            bad = np.argwhere(~np.isfinite(values))[0]
            raise ValueError(f"boxes must be finite: boxes[{bad[0]}, {bad[1]}] is {values[bad[0], bad[1]]}")
        idx = values[:, 0]
        if np.any(idx != np.round(idx)):
            raise ValueError("boxes[:, 0] (batch_index) must hold whole numbers")
        if num_images is not None and values.shape[0] and (idx.min() < 0 or idx.max() >= num_images):
            raise ValueError(
                f"boxes[:, 0] (batch_index) must be in [0, {num_images}), got values in [{idx.min():g}, {idx.max():g}]"
            )
    return boxes


def validate_spatial_scale(spatial_scale) -> float:
    try:
        value = float(spatial_scale)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"spatial_scale must be a positive number, got {spatial_scale!r}") from exc
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"spatial_scale must be a positive finite number, got {spatial_scale!r}")
    return value


def validate_sampling_ratio(sampling_ratio) -> int:
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, (int, np.integer)):
        raise ValueError(f"sampling_ratio must be an int (<= 0 means adaptive), got {sampling_ratio!r}")
    return int(sampling_ratio)
