"""Position-sensitive RoI pooling (R-FCN), channels last, equal to torchvision's CPU forward.

Output channel ``c`` of bin ``(p, q)`` reads input channel ``(c * ph + p) * pw + q``
(torchvision's NCHW channel index).
"""
from __future__ import annotations

import tensorflow as tf

from ._align_core import align_core
from ._pool_kernels import pool_bins
from .compile_policy import Plan


def ps_roi_pool_core(features, boxes, ph, pw, scale, *, plan: Plan):
    """Average of each bin's cells in its own channel group, from a float64 summed-area table
    (four lookups a bin; the float64 sums are exact enough to round as float32 sums do). The
    gradient is this function's own adjoint (automatic)."""
    del plan  # one kernel for every call mode
    boxes = tf.stop_gradient(boxes)
    shape = tf.shape(features)
    n_img, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    groups = ph * pw
    c_out = channels // groups
    table = tf.cumsum(tf.cumsum(tf.cast(features, tf.float64), axis=1), axis=2)
    table = tf.pad(table, [[0, 0], [1, 0], [1, 0], [0, 0]])  # (B, H + 1, W + 1, C)
    # channel (c, p, q) -> (p, q, c): each bin's channel group becomes one gathered row
    table = tf.transpose(tf.reshape(table, tf.stack([n_img, height + 1, width + 1, c_out, groups])), [0, 1, 2, 4, 3])
    flat = tf.reshape(table, tf.stack([-1, c_out]))
    b, hs, he, ws, we = pool_bins(boxes, ph, pw, scale, height, width, position_sensitive=True)
    group = tf.range(ph)[:, None] * pw + tf.range(pw)[None, :]  # (ph, pw)

    def corner(rows, cols):
        cell = (b[:, None, None] * (height + 1) + rows[:, :, None]) * (width + 1) + cols[:, None, :]
        return tf.gather(flat, cell * groups + group[None])  # (K, ph, pw, c_out)

    total = corner(he, we) - corner(hs, we) - corner(he, ws) + corner(hs, ws)
    area = tf.cast((he - hs)[:, :, None] * (we - ws)[:, None, :], tf.float64)[..., None]
    out = tf.where(area > 0, total / tf.maximum(area, 1.0), 0.0)
    return tf.cast(out, tf.float32)


def ps_roi_align_core(features, boxes, ph, pw, scale, *, sampling_ratio: int, plan: Plan):
    """Half-pixel aligned RoIAlign (torchvision's PS RoIAlign samples exactly where RoIAlign with
    ``aligned=True`` does), each bin reading only its own channel group."""
    return align_core(features, boxes, ph, pw, scale, sampling_ratio, True, plan, position_sensitive=True)
