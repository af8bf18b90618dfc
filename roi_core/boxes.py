"""Box conventions, conversions and input validation for the RoI operators.

Conventions
-----------
* Operator boxes: ``(K, 5)`` rows ``[batch_index, x1, y1, x2, y2]`` in input-image pixels;
  ``spatial_scale`` maps them onto the feature grid (``feature = pixel * spatial_scale``).
* Layer boxes: ``(B, N, 4)`` relative ``(x_min, y_min, x_max, y_max)`` in ``[0, 1]`` of the
  feature map (equivalently of the image).
* Pixel boxes: ``(x1, y1, x2, y2)`` with ``x`` to the right and ``y`` down, origin at the
  top-left corner of the top-left pixel.

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
    features = tf.cast(features, tf.float32)
    h, w = features.shape[1], features.shape[2]
    if (h is not None and h == 0) or (w is not None and w == 0):
        raise ValueError(f"features must have a non-empty spatial grid, got shape {features.shape}")
    return features


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


# ----- conversions (NumPy; used by the application, cheap and exact) ------------------------

def relative_to_pixels(rel, width: int, height: int) -> np.ndarray:
    """``(..., 4)`` relative ``(x_min, y_min, x_max, y_max)`` -> pixel coordinates."""
    rel = np.asarray(rel, dtype=np.float64)
    return rel * np.array([width, height, width, height], dtype=np.float64)


def pixels_to_relative(px, width: int, height: int) -> np.ndarray:
    """``(..., 4)`` pixel ``(x1, y1, x2, y2)`` -> relative coordinates."""
    px = np.asarray(px, dtype=np.float64)
    return px / np.array([width, height, width, height], dtype=np.float64)


def pixels_to_features(px, spatial_scale: float) -> np.ndarray:
    """Pixel coordinates -> feature-grid coordinates (``x * spatial_scale``)."""
    return np.asarray(px, dtype=np.float64) * float(spatial_scale)


def normalize_corners(px) -> np.ndarray:
    """Order each box's corners so that ``x1 <= x2`` and ``y1 <= y2``."""
    px = np.asarray(px, dtype=np.float64)
    x1 = np.minimum(px[..., 0], px[..., 2])
    x2 = np.maximum(px[..., 0], px[..., 2])
    y1 = np.minimum(px[..., 1], px[..., 3])
    y2 = np.maximum(px[..., 1], px[..., 3])
    return np.stack([x1, y1, x2, y2], axis=-1)


def with_batch_index(px, batch_index: int = 0) -> np.ndarray:
    """``(K, 4)`` pixel boxes -> ``(K, 5)`` operator rows ``[batch_index, x1, y1, x2, y2]``."""
    px = np.asarray(px, dtype=np.float32).reshape(-1, 4)
    idx = np.full((px.shape[0], 1), batch_index, dtype=np.float32)
    return np.concatenate([idx, px], axis=1)


def roi_pool_cells(box_px, spatial_scale: float, output_size, feature_hw) -> dict:
    """Where RoIPool's bins fall on the feature grid for one pixel box (for display).

    Returns integer cell edges ``rows (ph, 2)`` and ``cols (pw, 2)`` as half-open
    ``[start, end)`` feature-cell ranges after clipping, exactly as ``roi_pool`` uses them.
    """
    ph, pw = normalize_output_size(output_size)
    h, w = feature_hw
    x1, y1, x2, y2 = (np.float32(v) * np.float32(spatial_scale) for v in box_px)
    sw, sh, ew, eh = (int(np.sign(v) * np.floor(np.abs(v) + 0.5)) for v in (x1, y1, x2, y2))
    roi_w, roi_h = max(ew - sw + 1, 1), max(eh - sh + 1, 1)
    bh, bw = np.float32(roi_h) / np.float32(ph), np.float32(roi_w) / np.float32(pw)
    rows = [(min(max(int(np.floor(np.float32(p) * bh)) + sh, 0), h), min(max(int(np.ceil(np.float32(p + 1) * bh)) + sh, 0), h)) for p in range(ph)]
    cols = [(min(max(int(np.floor(np.float32(q) * bw)) + sw, 0), w), min(max(int(np.ceil(np.float32(q + 1) * bw)) + sw, 0), w)) for q in range(pw)]
    return {"rows": np.array(rows), "cols": np.array(cols)}


def roi_align_samples(box_px, spatial_scale: float, output_size, sampling_ratio=-1, aligned=False):
    """Sample-point coordinates (feature grid) RoIAlign uses for one pixel box (for display).

    Returns ``ys (ph, gh)`` and ``xs (pw, gw)``; the samples are their Cartesian product per bin.
    """
    ph, pw = normalize_output_size(output_size)
    offset = np.float32(0.5 if aligned else 0.0)
    s = np.float32(spatial_scale)
    x1, y1, x2, y2 = (np.float32(v) * s - offset for v in box_px)
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = max(rw, np.float32(1)), max(rh, np.float32(1))
    bh, bw = np.float32(rh / ph), np.float32(rw / pw)
    gh = sampling_ratio if sampling_ratio > 0 else int(np.ceil(bh))
    gw = sampling_ratio if sampling_ratio > 0 else int(np.ceil(bw))
    gh, gw = max(gh, 0), max(gw, 0)
    ys = np.array([[y1 + p * bh + (i + np.float32(0.5)) * bh / gh for i in range(gh)] for p in range(ph)], dtype=np.float32).reshape(ph, gh)
    xs = np.array([[x1 + q * bw + (j + np.float32(0.5)) * bw / gw for j in range(gw)] for q in range(pw)], dtype=np.float32).reshape(pw, gw)
    return {"ys": ys, "xs": xs}
