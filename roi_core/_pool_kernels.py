"""RoIPool kernels (channels last), equal to torchvision's CPU ``roi_pool``.

Bins of RoIs inside the map (at most ``(H + 2) / ph + 2`` rows) take a compiled path: a 1-D
sparse table along W answers each bin row with two lookups, and a short static chain of maxima
over the bin's rows fuses into one XLA loop. Other bins (RoIs much larger than the map) take,
inside the caller's XLA, the window walk (``_pool_walk``), and outside it 2-D sparse tables
built only to the levels they need. The gradient goes to each bin's first maximum in row-major
order, as torchvision's strict ``>`` does (a custom gradient): compiled plans find it by the
walk, small eager calls on index tables.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ._numerics import div as _div, mul as _mul, floor_log2 as _floor_log2
from ._numerics import round_half_away as _round_half_away
from . import _pool_walk
from .compile_policy import Plan, bucketed

# Rounded coordinates are clamped to +-2**60 cells before the integer conversion: every value
# torchvision's int32 holds stays exact, bins are computed in int64 without overflow, and a box
# far beyond the map (or a huge spatial_scale) still covers the map instead of wrapping around.
COORD_LIMIT = float(2**60)


def pool_bins(boxes, ph, pw, scale, height, width, *, position_sensitive=False):
    """Clipped half-open bin edges: rows (K, ph) and cols (K, pw), as int32 (see
    geometry.pool_bin_edges, also for ``position_sensitive``)."""
    b = tf.cast(boxes[:, 0], tf.int32)
    coords = _round_half_away(_mul(boxes[:, 1:], scale))
    coords = tf.cast(tf.clip_by_value(coords, -COORD_LIMIT, COORD_LIMIT), tf.int64)
    start_w, start_h, end_w, end_h = (coords[:, i] for i in range(4))
    inclusive = 0 if position_sensitive else 1
    roi_w = tf.maximum(end_w - start_w + inclusive, 1)
    roi_h = tf.maximum(end_h - start_h + inclusive, 1)

    def edges(roi_len, start, n, limit):
        bin_size = _div(tf.cast(roi_len, tf.float32), float(n))
        idx = tf.range(n, dtype=tf.float32)
        lo = tf.cast(tf.floor(idx[None, :] * bin_size[:, None]), tf.int64) + start[:, None]
        hi = tf.cast(tf.math.ceil((idx[None, :] + 1.0) * bin_size[:, None]), tf.int64) + start[:, None]
        limit = tf.cast(limit, tf.int64) - (1 if position_sensitive else 0)
        clip = lambda v: tf.cast(tf.clip_by_value(v, tf.constant(0, tf.int64), limit), tf.int32)  # noqa: E731
        return clip(lo), clip(hi)

    hs, he = edges(roi_h, start_h, ph, height)
    ws, we = edges(roi_w, start_w, pw, width)
    return b, hs, he, ws, we


def _num_levels(max_len):
    """Sparse-table levels needed for bins up to ``max_len`` (at least 1)."""
    return _floor_log2(tf.maximum(max_len, 1)) + 1


def _shift_combine(values, index, axis, shift):
    """out[i] = best(x[i], x[i + shift]) along ``axis`` (ties keep the earlier element)."""
    n = tf.shape(values)[axis]
    keep = n - shift

    def take(x, begin, size):
        begins = [0] * 4
        sizes = [-1] * 4
        begins[axis], sizes[axis] = begin, size
        return tf.slice(x, begins, sizes)

    a, b = take(values, 0, keep), take(values, shift, keep)
    tail_v = take(values, keep, shift)
    if index is None:
        new_v = tf.concat([tf.maximum(a, b), tail_v], axis=axis)
        new_v.set_shape(values.shape)
        return new_v, None
    later = b > a
    ia, ib = take(index, 0, keep), take(index, shift, keep)
    new_v = tf.concat([tf.where(later, b, a), tail_v], axis=axis)
    new_i = tf.concat([tf.where(later, ib, ia), take(index, keep, shift)], axis=axis)
    new_v.set_shape(values.shape)
    new_i.set_shape(index.shape)
    return new_v, new_i


def _levels_along(values, index, axis, count):
    """Stack of ``count`` sparse-table levels along ``axis``: level j covers 2**j elements.

    ``count`` is a Python int (unrolled: static shapes, as XLA needs) or a scalar tensor
    (a while loop: only the levels the bins need are built)."""
    if tf.is_tensor(count) and tf.executing_eagerly():
        count = int(count)
    if isinstance(count, int):
        vals, idxs = [values], [index]
        for j in range(1, count):
            v, i = _shift_combine(vals[-1], idxs[-1], axis, 1 << (j - 1))
            vals.append(v)
            idxs.append(i)
        return tf.stack(vals), (tf.stack(idxs) if index is not None else None)

    with_index = index is not None
    vals = tf.TensorArray(values.dtype, size=count, element_shape=values.shape).write(0, values)
    idxs = tf.TensorArray(tf.int32, size=count, element_shape=values.shape).write(0, index) if with_index else tf.zeros([])
    carry_i = index if with_index else tf.zeros([])

    def body(j, v, i, vals, idxs):
        v, new_i = _shift_combine(v, i if with_index else None, axis, tf.bitwise.left_shift(1, j - 1))
        vals = vals.write(j, v)
        if with_index:
            i, idxs = new_i, idxs.write(j, new_i)
        return j + 1, v, i, vals, idxs

    _, _, _, vals, idxs = tf.while_loop(
        lambda j, *_: j < count, body, (tf.constant(1), values, carry_i, vals, idxs), parallel_iterations=1
    )
    return vals.stack(), (idxs.stack() if with_index else None)


def _sparse_table(features, index, levels_h, levels_w):
    """Tables of shape (Lh, Lw, B, H, W, C): entry [a, b, n, h, w] = best of the
    2**a x 2**b block whose top-left cell is (h, w)."""
    tw_v, tw_i = _levels_along(features, index, axis=2, count=levels_w)  # (Lw, B, H, W, C)
    # Levels along H, applied to all W levels at once (treat Lw*B as the batch axis).
    shape = tf.shape(tw_v)
    merged = lambda t: tf.reshape(t, tf.concat([[-1], shape[2:]], 0))  # noqa: E731
    th_v, th_i = _levels_along(merged(tw_v), merged(tw_i) if tw_i is not None else None, axis=1, count=levels_h)
    full = tf.concat([[levels_h], shape], 0)
    return tf.reshape(th_v, full), (tf.reshape(th_i, full) if th_i is not None else None)


def _crop_to_bins(features, hs, he, ws, we):
    """The features cropped to the rows and columns the bins span, with bin edges in the crop
    (a drag's single box on a large map builds its sparse tables on its own cells). At least
    one cell, so that no box still gives a valid (empty) crop."""
    def span(lo, hi, size):
        start = tf.minimum(tf.reduce_min(tf.concat([[size], tf.reshape(lo, [-1])], 0)), size - 1)
        stop = tf.maximum(tf.reduce_max(tf.concat([[0], tf.reshape(hi, [-1])], 0)), start + 1)
        return start, stop

    shape = tf.shape(features)
    y0, y1 = span(hs, he, shape[1])
    x0, x1 = span(ws, we, shape[2])
    cropped = features[:, y0:y1, x0:x1, :]
    return cropped, (y0, hs - y0, he - y0), (x0, ws - x0, we - x0)


def _pool_lookups(features, boxes, ph, pw, scale, with_index):
    """The four block lookups of every bin, as flat table rows, plus the empty-bin mask, on
    sparse tables of the cells the bins cover, built to the levels they need (data-dependent
    shapes: outside XLA only)."""
    fshape = tf.shape(features)
    full_width = fshape[2]
    b, hs, he, ws, we = pool_bins(boxes, ph, pw, scale, fshape[1], fshape[2])
    features, (y0, hs, he), (x0, ws, we) = _crop_to_bins(features, hs, he, ws, we)
    fshape = tf.shape(features)
    n_img, height, width, channels = fshape[0], fshape[1], fshape[2], fshape[3]
    len_h, len_w = he - hs, we - ws  # (K, ph), (K, pw)
    levels_h = _num_levels(tf.reduce_max(tf.concat([[1], tf.reshape(len_h, [-1])], 0)))
    levels_w = _num_levels(tf.reduce_max(tf.concat([[1], tf.reshape(len_w, [-1])], 0)))
    index = None
    if with_index:  # flat h * W + w of the whole map
        spatial = (tf.range(height)[:, None] + y0) * full_width + tf.range(width)[None, :] + x0
        index = tf.broadcast_to(tf.reshape(spatial, [1, height, width, 1]), fshape)
    table_v, table_i = _sparse_table(features, index, levels_h, levels_w)
    flat_v = tf.reshape(table_v, [-1, channels])
    flat_i = tf.reshape(table_i, [-1, channels]) if table_i is not None else None

    a = _floor_log2(tf.maximum(len_h, 1))  # (K, ph)
    c = _floor_log2(tf.maximum(len_w, 1))  # (K, pw)
    top = tf.minimum(hs, height - 1)
    bottom = tf.clip_by_value(he - tf.bitwise.left_shift(1, a), 0, height - 1)
    left = tf.minimum(ws, width - 1)
    right = tf.clip_by_value(we - tf.bitwise.left_shift(1, c), 0, width - 1)

    plane = height * width
    base = a[:, :, None] * levels_w + c[:, None, :]
    base = (base * n_img + b[:, None, None]) * plane  # (K, ph, pw)
    rows = []
    for r in (top, bottom):
        for col in (left, right):
            rows.append(base + r[:, :, None] * width + col[:, None, :])
    rows = tf.stack(rows, axis=-1)  # (K, ph, pw, 4); int32: tables stay far below 2**31 cells
    empty = (len_h[:, :, None] <= 0) | (len_w[:, None, :] <= 0)  # (K, ph, pw)
    return flat_v, flat_i, rows, empty, b


_FLT_MAX = float(np.finfo(np.float32).max)


def _as_torchvision_sees(features):
    """torchvision starts each bin at -FLT_MAX and takes ``v > best``: NaN, -inf and -FLT_MAX
    never win. Mapping them all to -FLT_MAX gives the same maxima, and a bin whose maximum is
    -FLT_MAX has no winner (no gradient)."""
    return tf.where(features > -_FLT_MAX, features, -_FLT_MAX)


def _pool_forward_impl(features, boxes, ph, pw, scale):
    features = _as_torchvision_sees(features)
    flat_v, _, rows, empty, _ = _pool_lookups(features, boxes, ph, pw, scale, False)
    out = tf.reduce_max(tf.gather(flat_v, rows), axis=3)
    return tf.where(empty[..., None], tf.zeros_like(out), out)


def _pool_argmax_impl(features, boxes, ph, pw, scale):
    """Flat spatial index (h * W + w) of each bin's first maximum; -1 for empty bins and bins
    without a value above -FLT_MAX."""
    features = _as_torchvision_sees(features)
    flat_v, flat_i, rows, empty, b = _pool_lookups(features, boxes, ph, pw, scale, True)
    values, index = tf.gather(flat_v, rows), tf.gather(flat_i, rows)  # (K, ph, pw, 4, C)
    best_v, best_i = values[:, :, :, 0], index[:, :, :, 0]
    for j in range(1, 4):
        v, i = values[:, :, :, j], index[:, :, :, j]
        better = (v > best_v) | ((v == best_v) & (i < best_i))
        best_v = tf.where(better, v, best_v)
        best_i = tf.where(better, i, best_i)
    no_winner = empty[..., None] | (best_v <= -_FLT_MAX)
    return tf.where(no_winner, -tf.ones_like(best_i), best_i), b


def _row_window_maxima(features, count):
    """The 1-D sparse table along W in one pass, for a static width: level j holds the maximum
    of the 2**j cells from each cell rightwards, clipped at the map's edge (the same values as
    ``_levels_along``). Each level reads the features directly, so XLA fuses the whole table
    into one loop that writes it once, instead of one materialized map per level."""
    width = features.shape[2]
    if width is None:
        return _levels_along(features, None, axis=2, count=count)[0]
    levels = [features]
    for j in range(1, count):
        level = levels[-1]
        for d in range(1 << (j - 1), 1 << j):
            # cell w + d, clamped: the last cell again, which leaves the maximum as it is. A gather
            # of constant columns fuses into the table's loop; padding the map was one more copy.
            level = tf.maximum(level, tf.gather(features, np.minimum(np.arange(width) + d, width - 1), axis=2))
        levels.append(level)
    return tf.stack(levels)


def _pool_forward_rows(features, boxes, ph, pw, scale, bounds):
    """Forward RoIPool for bins of at most ``max_rows`` rows, ``bounds = (max_rows, levels_w)``:
    a 1-D sparse table along W answers each row of a bin with two lookups, and the bin's rows
    are a short static chain of maxima. XLA fuses the chain into one loop over the output, so
    the only large write is the output itself (a 2-D table costs levels_h x levels_w maps).
    Also returns whether each box's bins fit the bounds (``(K,)``): computed here, in the same
    compiled call, the check costs no graph ops of its own."""
    max_rows, levels_w = bounds
    shape = tf.shape(features)
    n_img, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    b, hs, he, ws, we = pool_bins(boxes, ph, pw, scale, height, width)
    len_h, len_w = he - hs, we - ws
    fits = tf.logical_and(tf.reduce_all(len_h <= max_rows, axis=1), tf.reduce_all(len_w < (1 << levels_w), axis=1))
    table = _row_window_maxima(_as_torchvision_sees(features), levels_w)  # (Lw, B, H, W, C)
    flat = tf.reshape(table, [-1, channels])
    c = _floor_log2(tf.maximum(len_w, 1))  # (K, pw)
    left = tf.minimum(ws, width - 1)[:, None, :]
    right = tf.clip_by_value(we - tf.bitwise.left_shift(1, c), 0, width - 1)[:, None, :]
    base = ((c * n_img + b[:, None]) * height)[:, None, :]  # (K, 1, pw)
    out = None
    # Rows past a bin's end are masked to -inf. (Re-reading the bin's last row instead, which
    # needs no mask, measured 20-30% slower: XLA's loop then loads from data-dependent rows.)
    for i in range(max_rows):
        row = (base + tf.minimum(hs + i, height - 1)[:, :, None]) * width  # (K, ph, pw)
        best = tf.maximum(tf.gather(flat, row + left), tf.gather(flat, row + right))
        best = tf.where((i < len_h)[:, :, None, None], best, -np.inf)
        out = best if out is None else tf.maximum(out, best)
    empty = (len_h[:, :, None] <= 0) | (len_w[:, None, :] <= 0)
    return tf.where(empty[..., None], 0.0, out), fits


_pool_forward_xla = tf.function(_pool_forward_rows, jit_compile=True, reduce_retracing=False)


def _walk_forward(features, boxes, ph, pw, scale):
    shape = tf.shape(features)
    return _pool_walk.forward(features, pool_bins(boxes, ph, pw, scale, shape[1], shape[2]), ph, pw)


def _walk_backward(features, boxes, ph, pw, scale, upstream):
    shape = tf.shape(features)
    return _pool_walk.backward(features, pool_bins(boxes, ph, pw, scale, shape[1], shape[2]), upstream)


_walk_backward_xla = tf.function(_walk_backward, jit_compile=True, reduce_retracing=False)


def _pool_dispatch(features, boxes, ph, pw, scale, *, plan: Plan):
    """The forward pass: the compiled row kernel when every bin fits ``plan.bounds`` (see
    compile_policy.pool_bounds); else, inside the caller's XLA, the walk, and the uncompiled
    general path outside it. (In XLA the general path would be sparse tables of the whole map,
    static shapes: XLA allocates every branch's buffers on each call, and buffers above glibc's
    mmap threshold come as fresh pages each time.)"""
    general = _walk_forward if plan.xla else _pool_forward_impl
    if plan.bounds is None or not plan.compiled:
        return general(features, boxes, ph, pw, scale)
    max_rows, levels_w = plan.bounds
    fast = lambda bx: _pool_forward_xla(features, bx, ph, pw, scale, (max_rows, levels_w))  # noqa: E731
    out, fits = bucketed(fast, boxes, plan.bucket)
    # The row kernel runs first, whatever the boxes, and checks the bounds itself: a check
    # before it was a dozen graph ops and a conditional call more on every call, and boxes
    # beyond the bounds are rare (they pay for the row kernel and then the general path).
    return tf.cond(tf.reduce_all(fits), lambda: out, lambda: general(features, boxes, ph, pw, scale))


def _pool_backward(features, boxes, ph, pw, scale, upstream, plan: Plan):
    """The gradient: compiled plans walk the bins once and add each bin's upstream at its first
    maximum (inlined into the caller's XLA, else one compiled call); small eager calls find
    the first maxima on sparse tables and sum them uncompiled."""
    if plan.xla:
        return _walk_backward(features, boxes, ph, pw, scale, upstream)
    if plan.compiled:
        grad = []

        def call(padded):  # eager callers: boxes padded to a few counts, with zero upstream
            extra = tf.shape(padded)[0] - tf.shape(boxes)[0]
            up = tf.pad(upstream, [[0, extra], [0, 0], [0, 0], [0, 0]])
            grad.append(_walk_backward_xla(features, padded, ph, pw, scale, up))
            return padded

        bucketed(call, boxes, plan.bucket)
        return grad[0]
    argmax, b = _pool_argmax_impl(features, boxes, ph, pw, scale)
    shape = tf.shape(features)
    hw = tf.cast(shape[1] * shape[2], tf.int64)
    channels = tf.cast(shape[3], tf.int64)
    total = tf.cast(shape[0], tf.int64) * hw * channels
    c = tf.range(channels)[None, None, None, :]
    flat = (tf.cast(b, tf.int64)[:, None, None, None] * hw + tf.cast(argmax, tf.int64)) * channels + c
    flat = tf.where(argmax >= 0, flat, total)  # empty bins go to a dropped slot
    summed = tf.math.unsorted_segment_sum(tf.reshape(upstream, [-1]), tf.reshape(flat, [-1]), total + 1)
    return tf.reshape(summed[:-1], shape)


def roi_pool_core(features, boxes, ph, pw, scale, *, plan: Plan):
    """RoIPool of validated float32 inputs, with the first-maximum gradient."""
    boxes = tf.stop_gradient(boxes)

    @tf.custom_gradient
    def pool(feats):
        def grad(upstream):
            return _pool_backward(feats, boxes, ph, pw, scale, upstream, plan)

        return _pool_dispatch(feats, boxes, ph, pw, scale, plan=plan), grad

    return pool(features)
