"""RoIAlign building blocks (channels last), equal to torchvision's CPU ``roi_align``: the
geometry, sample positions, the per-axis bilinear rule and separable weights.

Bilinear sampling on a Cartesian grid is separable: each bin's weight on cell (h, w) is (summed
row weight) x (summed column weight), which the contractions (_contract.py) use for RoIs beyond
the sample walk's limit and for the gradient. The forward pass walks the samples
(_align_walk.py).
"""
from __future__ import annotations

import tensorflow as tf

from ._numerics import div as _div, mul as _mul

_CANDIDATES = 6  # adaptive grids space samples > 0.5 apart: at most 4 touch one row, +2 slack


def _taps(y, length):
    """torchvision's bilinear rule along one axis for samples at ``y``: the two grid lines
    (low, high, float) and their weights, zero outside ``[-1, length]`` (NaN too)."""
    inside = (y >= -1.0) & (y <= tf.cast(length, tf.float32))
    yc = tf.maximum(y, 0.0)
    low = tf.floor(yc)
    last = tf.cast(length - 1, tf.float32)
    at_end = low >= last
    low = tf.where(at_end, last, low)
    yc = tf.where(at_end, low, yc)
    high = tf.where(at_end, low, low + 1.0)
    ly = yc - low
    return low, high, tf.where(inside, 1.0 - ly, 0.0), tf.where(inside, ly, 0.0)


def _tap_weight(y, row, length):
    """Bilinear weight of a sample at ``y`` on grid line ``row``."""
    low, high, w_low, w_high = _taps(y, length)
    return tf.where(row == low, w_low, 0.0) + tf.where(row == high, w_high, 0.0)


def bin_starts(start, bin_size, n_out):
    """``(K, n_out)``: where each bin starts, torchvision's float32 ``start + p * bin`` (the
    product rounded on its own, never fused with the add)."""
    return start[:, None] + _mul(tf.range(n_out, dtype=tf.float32)[None, :], bin_size[:, None])


def sample_at(base, i, bin_size, grid):
    """Sample ``i`` (float) of a bin starting at ``base``: torchvision's float32
    ``base + ((i + .5) * bin) / grid``, each operation rounded on its own. Windows, weights and
    taps all use this one expression, so that they agree to the last bit."""
    return base + _div((i + 0.5) * bin_size, grid)  # a product into a division: nothing to fuse


def _axis_weights(start, bin_size, grid, n_out, length, sampling_ratio, rows=None):
    """Summed bilinear weights of each bin's samples on each grid line: ``(K, n_out, L)``.

    ``start``/``bin_size`` are ``(K,)`` float32, ``grid`` ``(K,)`` int32 samples per bin.
    ``rows``: the grid lines to weigh, ``(K, n_out, L)`` int32 (a window per bin); by default
    the whole axis, ``L = length``.
    Sample positions use torchvision's float32 expression
    ``start + p * bin + ((i + .5) * bin) / grid``; each weight is divided by ``max(grid, 1)``.
    """
    base = bin_starts(start, bin_size, n_out)  # (K, P)
    rows = tf.range(length)[None, None, :] if rows is None else rows
    rows = tf.cast(rows, tf.float32)  # (K or 1, P or 1, L)
    gridf = tf.cast(grid, tf.float32)
    if sampling_ratio > 0:
        i = tf.range(sampling_ratio, dtype=tf.float32)
        y = sample_at(base[:, :, None], i[None, None, :], bin_size[:, None, None], gridf[:, None, None])
        w = _tap_weight(y[:, :, :, None], rows[:, :, None, :], length)  # (K, P, S, L)
        w = tf.reduce_sum(w, axis=2)
    else:
        w = adaptive_weights(base, bin_size[:, None], gridf[:, None], rows, length)
    return w / tf.maximum(gridf, 1.0)[:, None, None]


def adaptive_weights(base, bin_size, gridf, rows, length):
    """Summed (not yet averaged) bilinear weights of adaptive bins on grid lines ``rows``.

    ``base``/``bin_size``/``gridf`` (float samples per bin) and ``length`` broadcast to a shape
    ``S``; ``rows`` is ``S + (L,)``. Only samples within one cell of a grid line touch it:
    a few candidates around each line are enumerated instead of every sample (static shapes
    for any RoI size).
    """
    safe_step = tf.where(gridf > 0, _div(bin_size, tf.maximum(gridf, 1.0)), 1.0)
    approx = (rows - 1.0 - base[..., None]) / safe_step[..., None] - 0.5
    approx = tf.where(tf.math.is_finite(approx), approx, 0.0)
    first = tf.floor(tf.clip_by_value(approx, -4.0, 2.0**30)) - 1.0
    first = tf.clip_by_value(first, 0.0, tf.maximum(gridf - _CANDIDATES, 0.0)[..., None])  # S + (L,)
    i = first[..., None] + tf.range(_CANDIDATES, dtype=tf.float32)  # S + (L, candidates)
    g = gridf[..., None, None]
    y = sample_at(base[..., None, None], i, bin_size[..., None, None], g)
    length = tf.convert_to_tensor(length)
    w = _tap_weight(y, rows[..., None], length[..., None, None] if length.shape.rank else length)
    return tf.reduce_sum(tf.where(i < g, w, 0.0), axis=-1)


def align_geometry(boxes, ph, pw, scale, sampling_ratio, aligned):
    """Per RoI: start_h, start_w, bin_h, bin_w (float32) and samples per bin grid_h, grid_w."""
    offset = 0.5 if aligned else 0.0
    coords = _mul(boxes[:, 1:], scale) - offset  # the product rounded first, as in C++
    start_w, start_h, end_w, end_h = (coords[:, i] for i in range(4))
    roi_w, roi_h = end_w - start_w, end_h - start_h
    if not aligned:
        roi_w, roi_h = tf.maximum(roi_w, 1.0), tf.maximum(roi_h, 1.0)
    bin_h, bin_w = _div(roi_h, float(ph)), _div(roi_w, float(pw))
    if sampling_ratio > 0:
        grid_h = tf.fill(tf.shape(bin_h), sampling_ratio)
        grid_w = grid_h
    else:
        # Clip before the cast: a huge box must not overflow int32.
        grid_h = tf.cast(tf.clip_by_value(tf.math.ceil(bin_h), 0.0, 2.0**30), tf.int32)
        grid_w = tf.cast(tf.clip_by_value(tf.math.ceil(bin_w), 0.0, 2.0**30), tf.int32)
    return start_h, start_w, bin_h, bin_w, grid_h, grid_w


def align_weights(boxes, ph, pw, scale, sampling_ratio, aligned, height, width):
    start_h, start_w, bin_h, bin_w, grid_h, grid_w = align_geometry(boxes, ph, pw, scale, sampling_ratio, aligned)
    wy = _axis_weights(start_h, bin_h, grid_h, ph, height, sampling_ratio)
    wx = _axis_weights(start_w, bin_w, grid_w, pw, width, sampling_ratio)
    return tf.stop_gradient(wy), tf.stop_gradient(wx)
