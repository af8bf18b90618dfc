"""RoIPool kernels (channels last), equal to torchvision's CPU ``roi_pool``.

Bins of RoIs inside the map (at most ``(H + 2) / ph + 2`` rows) take a compiled path: a 1-D
sparse table along W answers each bin row with two lookups, and a short static chain of maxima
over the bin's rows fuses into one XLA loop. Other bins (RoIs much larger than the map) use a
2-D sparse table built only to the levels they need. The gradient goes to each bin's first
maximum in row-major order, as torchvision's strict ``>`` does (a custom gradient; index tables
are only built in the backward pass).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ._numerics import div as _div, mul as _mul, floor_log2 as _floor_log2, in_xla_context as _in_xla_context
from ._numerics import round_half_away as _round_half_away
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


def _num_levels(max_len, static_len):
    """Sparse-table levels needed for bins up to ``max_len`` (at least 1)."""
    if _in_xla_context() and static_len is not None:
        return max(static_len.bit_length(), 1)  # static: every level the axis can use
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


def _pool_lookups(features, boxes, ph, pw, scale, with_index, levels=None):
    """The four block lookups of every bin, as flat table rows, plus the empty-bin mask.

    ``levels``: static ``(levels_h, levels_w)`` (Python ints) or None to build only the levels
    the bins need (a data-dependent count)."""
    fshape = tf.shape(features)
    full_width = fshape[2]
    b, hs, he, ws, we = pool_bins(boxes, ph, pw, scale, fshape[1], fshape[2])
    y0, x0 = tf.constant(0), tf.constant(0)
    if levels is None and not _in_xla_context():  # the general path (XLA needs static shapes):
        # tables of the cells some bin covers, not of the whole map
        features, (y0, hs, he), (x0, ws, we) = _crop_to_bins(features, hs, he, ws, we)
        fshape = tf.shape(features)
    n_img, height, width, channels = fshape[0], fshape[1], fshape[2], fshape[3]
    len_h, len_w = he - hs, we - ws  # (K, ph), (K, pw)
    if levels is None:
        levels_h = _num_levels(tf.reduce_max(tf.concat([[1], tf.reshape(len_h, [-1])], 0)), features.shape[1])
        levels_w = _num_levels(tf.reduce_max(tf.concat([[1], tf.reshape(len_w, [-1])], 0)), features.shape[2])
    else:
        levels_h, levels_w = levels
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


def _pool_forward_impl(features, boxes, ph, pw, scale, levels=None):
    features = _as_torchvision_sees(features)
    flat_v, _, rows, empty, _ = _pool_lookups(features, boxes, ph, pw, scale, False, levels)
    out = tf.reduce_max(tf.gather(flat_v, rows), axis=3)  # fused into one pass under XLA
    return tf.where(empty[..., None], tf.zeros_like(out), out)


def _pool_argmax_impl(features, boxes, ph, pw, scale, levels=None):
    """Flat spatial index (h * W + w) of each bin's first maximum; -1 for empty bins and bins
    without a value above -FLT_MAX."""
    features = _as_torchvision_sees(features)
    flat_v, flat_i, rows, empty, b = _pool_lookups(features, boxes, ph, pw, scale, True, levels)
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
    span = 1 << (count - 1)
    edge = tf.repeat(features[:, :, -1:], span - 1, axis=2)  # repeating the last cell: max unchanged
    padded = tf.concat([features, edge], axis=2)
    shifted = [padded[:, :, d : d + width] for d in range(span)]
    levels = [features]
    for j in range(1, count):
        level = levels[-1]
        for d in range(1 << (j - 1), 1 << j):
            level = tf.maximum(level, shifted[d])
        levels.append(level)
    return tf.stack(levels)


def _pool_forward_rows(features, boxes, ph, pw, scale, bounds):
    """Forward RoIPool for bins of at most ``max_rows`` rows, ``bounds = (max_rows, levels_w)``:
    a 1-D sparse table along W answers each row of a bin with two lookups, and the bin's rows
    are a short static chain of maxima. XLA fuses the chain into one loop over the output, so
    the only large write is the output itself (a 2-D table costs levels_h x levels_w maps)."""
    max_rows, levels_w = bounds
    shape = tf.shape(features)
    n_img, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    b, hs, he, ws, we = pool_bins(boxes, ph, pw, scale, height, width)
    len_h, len_w = he - hs, we - ws
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
    return tf.where(empty[..., None], 0.0, out)


_WALK_GROUP = 256  # bins per pass of the window walk
_WALK_UNROLL = 4  # cells read per loop step


def _walk_bins(features, boxes, ph, pw, scale):
    """Every bin's window for the walk, flat over (K, ph, pw) plus one empty spare bin (so that
    no array is empty when K turns out 0 at run time): first cell (a row of the features
    flattened to (B * H * W, C)), width, area and the image's first cell; and the bins' order,
    largest area first."""
    shape = tf.shape(features)
    height, width = shape[1], shape[2]
    b, hs, he, ws, we = pool_bins(boxes, ph, pw, scale, height, width)
    rows, cols = tf.maximum(he - hs, 0)[:, :, None], tf.maximum(we - ws, 0)[:, None, :]
    image = (b * height * width)[:, None, None]
    first = image + tf.minimum(hs, height - 1)[:, :, None] * width + tf.minimum(ws, width - 1)[:, None, :]
    flat = lambda t: tf.concat([tf.reshape(tf.broadcast_to(t, tf.shape(first)), [-1]), [0]], 0)  # noqa: E731
    area = flat(rows * cols)
    return flat(first), flat(tf.maximum(cols, 1)), area, flat(image), tf.argsort(area, direction="DESCENDING")


def _walk(features, boxes, ph, pw, scale, visit, carry):
    """Visit the first maximum of every bin, ``_WALK_GROUP`` bins at a time.

    Bins go largest first, so each pass walks its first bin's cells (``_WALK_UNROLL`` per step,
    row-major) and the smaller bins re-read their last cell, which never wins: a strict ``>``
    from -FLT_MAX keeps torchvision's first maximum, skips NaN, and leaves bins of -inf and
    -FLT_MAX without a winner. The work follows the bins' area, whatever the RoIs' size, and no
    table is built. ``visit(bins, best, index, carry)`` gets each pass's bin numbers (``(G,)``,
    flat over (K, ph, pw); the spare bin is number K * ph * pw), maxima (``(G, C)``: -FLT_MAX
    without a winner, 0 for an empty bin) and flat spatial indices ``h * W + w`` (-1 without a
    winner or cells), and returns the new carry. The last pass fills up with the smallest bin
    again, which is then visited more than once."""
    channels = tf.shape(features)[3]
    width = tf.shape(features)[2]
    first, cols, area, image, order = _walk_bins(features, boxes, ph, pw, scale)
    n = tf.shape(area)[0] - 1
    group = _WALK_GROUP
    n_groups = (n + group - 1) // group
    slots = tf.gather(order, tf.minimum(tf.range(tf.maximum(n_groups, 1) * group), n))
    flat = tf.reshape(features, [-1, channels])

    def one_group(i, carry):
        ids = tf.slice(slots, [i * group], [group])
        size = tf.gather(area, ids)
        start, x, last = tf.gather(first, ids), tf.gather(cols, ids), tf.maximum(size - 1, 0)

        def cells(t):  # (unroll, G): the next cells of each bin, row-major
            tap = tf.minimum(t + tf.range(_WALK_UNROLL)[:, None], last)
            row = tap // x
            return start + row * width + (tap - row * x)

        def step(t, best, index, cell):
            values = tf.gather(flat, cell)  # (unroll, G, C)
            for u in range(_WALK_UNROLL):
                wins = values[u] > best
                best = tf.where(wins, values[u], best)
                index = tf.where(wins, cell[u][:, None], index)
            return t + _WALK_UNROLL, best, index, cells(t + _WALK_UNROLL)

        best = tf.fill(tf.stack([group, channels]), -_FLT_MAX)
        index = tf.fill(tf.stack([group, channels]), -1)
        limit = tf.gather(area, ids[0])  # the largest bin of the pass
        _, best, index, _ = tf.while_loop(lambda t, *_: t < limit, step, (tf.constant(0), best, index, cells(0)))
        empty = (size <= 0)[:, None]  # its one re-read cell (a clamped one) does not count
        spatial = tf.where((index >= 0) & ~empty, index - tf.gather(image, ids)[:, None], -1)
        return i + 1, visit(ids, tf.where(empty, 0.0, best), spatial, carry)

    return tf.while_loop(lambda i, _: i < n_groups, one_group, (tf.constant(0), carry))[1]


def _pool_forward_walk(features, boxes, ph, pw, scale):
    """Forward RoIPool by the window walk, for RoIs of any size (XLA only: its scatter drops the
    writes to the spare bin's row, which is out of bounds)."""
    k, channels = tf.shape(boxes)[0], tf.shape(features)[3]
    if boxes.shape[0] == 0:  # a scatter into a static empty output does not even trace
        return tf.zeros(tf.stack([0, ph, pw, channels]))

    def write(ids, best, _, out):
        return tf.tensor_scatter_nd_update(out, ids[:, None], best)

    # A box count unknown when traced may be 0 when compiled, and XLA does not compile a scatter
    # into an empty output: one spare row then, dropped at the end (a copy, on this rare path).
    spare = 1 if boxes.shape[0] is None else 0
    out = _walk(features, boxes, ph, pw, scale, write, tf.zeros(tf.stack([k * ph * pw + spare, channels])))
    return tf.reshape(out[: k * ph * pw] if spare else out, tf.stack([k, ph, pw, channels]))


_pool_forward_xla = tf.function(_pool_forward_rows, jit_compile=True, reduce_retracing=False)
_pool_argmax_xla = tf.function(_pool_argmax_impl, jit_compile=True, reduce_retracing=False)


def _pool_dispatch(features, boxes, ph, pw, scale, *, plan: Plan, argmax: bool):
    """The compiled kernel when every bin fits ``plan.bounds`` (see compile_policy.pool_bounds),
    else the general one; ``argmax``: the backward pass's first-maximum indices."""
    fast, general = (_pool_argmax_xla, _pool_argmax_impl) if argmax else (_pool_forward_xla, _pool_forward_impl)
    if plan.xla and not argmax:
        # Inside the caller's XLA the general path would be sparse tables of the whole map
        # (static shapes): the walk instead, whose only large buffer is the output. XLA
        # allocates every branch's buffers on each call, and buffers above glibc's mmap
        # threshold come as fresh pages each time.
        general = _pool_forward_walk
    if plan.bounds is None or not plan.compiled:
        return general(features, boxes, ph, pw, scale)
    max_rows, levels_h, levels_w = plan.bounds
    shape = tf.shape(features)
    _, hs, he, ws, we = pool_bins(boxes, ph, pw, scale, shape[1], shape[2])
    fits = tf.logical_and(tf.reduce_all(he - hs <= max_rows), tf.reduce_all(we - ws < (1 << levels_w)))
    static = (levels_h, levels_w) if argmax else (max_rows, levels_w)
    run_fast = lambda: bucketed(lambda bx: fast(features, bx, ph, pw, scale, static), boxes, plan.bucket)  # noqa: E731
    run_general = lambda: general(features, boxes, ph, pw, scale)  # noqa: E731
    return tf.cond(fits, run_fast, run_general)  # eagerly too, tf.cond runs just the branch taken


def roi_pool_core(features, boxes, ph, pw, scale, *, plan: Plan):
    """RoIPool of validated float32 inputs, with the first-maximum gradient."""
    boxes = tf.stop_gradient(boxes)

    @tf.custom_gradient
    def pool(feats):
        out = _pool_dispatch(feats, boxes, ph, pw, scale, plan=plan, argmax=False)

        def grad(upstream):
            argmax, b = _pool_dispatch(feats, boxes, ph, pw, scale, plan=plan, argmax=True)
            shape = tf.shape(feats)
            hw = tf.cast(shape[1] * shape[2], tf.int64)
            channels = tf.cast(shape[3], tf.int64)
            total = tf.cast(shape[0], tf.int64) * hw * channels
            c = tf.range(channels)[None, None, None, :]
            flat = (tf.cast(b, tf.int64)[:, None, None, None] * hw + tf.cast(argmax, tf.int64)) * channels + c
            flat = tf.where(argmax >= 0, flat, total)  # empty bins go to a dropped slot
            summed = tf.math.unsorted_segment_sum(tf.reshape(upstream, [-1]), tf.reshape(flat, [-1]), total + 1)
            return tf.reshape(summed[:-1], shape)

        return out, grad

    return pool(features)
