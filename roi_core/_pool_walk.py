"""The RoIPool window walk: every bin's cells read in place, for RoIs of any size (XLA only).

Bins are sorted by area, largest first, and taken ``_GROUP`` at a time; a loop walks the pass's
largest window ``_UNROLL`` cells per step, row-major, and smaller bins re-read their last cell.
A strict ``>`` from -FLT_MAX keeps torchvision's first maximum: NaN never wins, and bins of
-inf and -FLT_MAX have no winner. The work follows the bins' area and no table is built, so its
only large buffer is its result: the compiled path for RoIs beyond the row kernel's bounds and
for the backward pass (the gradient goes to each bin's first maximum).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

_GROUP = 256  # bins per pass
_UNROLL = 4  # cells read per loop step
_FLT_MAX = float(np.finfo(np.float32).max)


def _windows(features, bins):
    """Each bin's window, flat over (K, ph, pw) plus one empty spare bin (so that no array is
    empty when K turns out 0 at run time): first cell (a row of the features flattened to
    (B * H * W, C)), width and area; and the bins' order, largest area first."""
    b, hs, he, ws, we = bins
    shape = tf.shape(features)
    height, width = shape[1], shape[2]
    rows, cols = tf.maximum(he - hs, 0)[:, :, None], tf.maximum(we - ws, 0)[:, None, :]
    top = (b[:, None] * height + tf.minimum(hs, height - 1))[:, :, None]
    first = top * width + tf.minimum(ws, width - 1)[:, None, :]
    flat = lambda t: tf.concat([tf.reshape(tf.broadcast_to(t, tf.shape(first)), [-1]), [0]], 0)  # noqa: E731
    area = flat(rows * cols)
    return flat(first), flat(tf.maximum(cols, 1)), area, tf.argsort(area, direction="DESCENDING")


def walk(features, bins, visit, carry):
    """Visit the first maximum of every bin. ``bins``: ``pool_bins``'s ``(b, hs, he, ws, we)``.

    ``visit(ids, best, cell, carry)`` gets each pass's bin numbers (``(G,)``, flat over
    (K, ph, pw); the spare bin is number K * ph * pw; empty bins may come more than once), the maxima
    (``(G, C)``: -FLT_MAX without a winner, 0 for an empty bin) and the winners' cells (rows
    of the features flattened to (B * H * W, C); -1 without a winner), and returns the new carry.
    """
    shape = tf.shape(features)
    width, channels = shape[2], shape[3]
    first, cols, area, order = _windows(features, bins)
    n = tf.shape(area)[0] - 1
    n_groups = (n + _GROUP - 1) // _GROUP
    # the last pass fills up with the last bin in order: an empty one (the spare's area is 0)
    slots = tf.gather(order, tf.minimum(tf.range(tf.maximum(n_groups, 1) * _GROUP), n))
    flat = tf.reshape(features, [-1, channels])

    def one_group(i, carry):
        ids = tf.slice(slots, [i * _GROUP], [_GROUP])
        size = tf.gather(area, ids)
        start, x, last = tf.gather(first, ids), tf.gather(cols, ids), tf.maximum(size - 1, 0)

        def cells(t):  # (unroll, G): the next cells of each bin, row-major
            tap = tf.minimum(t + tf.range(_UNROLL)[:, None], last)
            row = tap // x
            return start + row * width + (tap - row * x)

        def step(t, best, index, cell):
            values = tf.gather(flat, cell)  # (unroll, G, C)
            for u in range(_UNROLL):
                wins = values[u] > best
                best = tf.where(wins, values[u], best)
                index = tf.where(wins, cell[u][:, None], index)
            return t + _UNROLL, best, index, cells(t + _UNROLL)

        best = tf.fill(tf.stack([_GROUP, channels]), -_FLT_MAX)
        index = tf.fill(tf.stack([_GROUP, channels]), -1)
        limit = size[0]  # the largest bin of the pass
        _, best, index, _ = tf.while_loop(lambda t, *_: t < limit, step, (tf.constant(0), best, index, cells(0)))
        empty = (size <= 0)[:, None]  # its one clamped cell, read anyway, does not count
        return i + 1, visit(ids, tf.where(empty, 0.0, best), tf.where(empty, -1, index), carry)

    return tf.while_loop(lambda i, _: i < n_groups, one_group, (tf.constant(0), carry))[1]


def forward(features, bins, ph, pw):
    """RoIPool's output ``(K, ph, pw, C)``. Its scatter drops the spare bin's row (out of
    bounds), as XLA's scatter does."""
    k, channels = tf.shape(bins[0])[0], tf.shape(features)[3]
    if bins[0].shape[0] == 0:  # a scatter into a static empty output does not even trace
        return tf.zeros(tf.stack([0, ph, pw, channels]))

    def write(ids, best, _, out):
        return tf.tensor_scatter_nd_update(out, ids[:, None], best)

    # A box count unknown when traced may be 0 when compiled, and XLA does not compile a scatter
    # into an empty output: one spare row then, dropped at the end (a copy, on this rare path).
    spare = 1 if bins[0].shape[0] is None else 0
    out = walk(features, bins, write, tf.zeros(tf.stack([k * ph * pw + spare, channels])))
    return tf.reshape(out[: k * ph * pw] if spare else out, tf.stack([k, ph, pw, channels]))


def backward(features, bins, upstream):
    """The gradient of ``sum(forward * upstream)``: each bin's upstream value added at its first
    maximum, per channel; bins without a winner add nothing."""
    channels = tf.shape(features)[3]
    if bins[0].shape[0] == 0:
        return tf.zeros_like(features)
    up = tf.reshape(upstream, [-1, channels])
    if bins[0].shape[0] is None:  # K may be 0 at run time: a row for the spare bin to read
        up = tf.concat([up, tf.zeros([1, channels])], 0)
    channel = tf.range(tf.cast(channels, tf.int64))[None, :]
    # Element (cell, c) of the features flattened to one axis (int64: a map may have more than
    # 2**31 values); no winner: past the end, where XLA's scatter drops it.
    size = tf.size(features, out_type=tf.int64)

    def add(ids, _, cell, grad):
        at = tf.where(cell >= 0, tf.cast(cell, tf.int64) * tf.cast(channels, tf.int64) + channel, size)
        return tf.tensor_scatter_nd_add(grad, tf.reshape(at, [-1, 1]), tf.reshape(tf.gather(up, ids), [-1]))

    return tf.reshape(walk(features, bins, add, tf.zeros(tf.reshape(size, [1]))), tf.shape(features))
