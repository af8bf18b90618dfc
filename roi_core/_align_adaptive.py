"""The adaptive RoIAlign kernel: work in proportion to each RoI's area.

A compiled kernel sorts the RoIs by window size and walks 16 of them at a time through their
windows. RoIs well beyond the map (windows longer than the kernel's static bounds) are left to
the general contraction (_contract.py).
"""
from __future__ import annotations

import tensorflow as tf

from ._align_kernels import adaptive_weights, align_geometry, bin_starts, sample_at

_ALIGN_GROUP = 16  # RoIs per pass of the adaptive kernel (16 * 49 bins of C channels stay in cache)
_ALIGN_UNROLL = 4  # taps gathered per loop step

def _axis_window(start, bin_size, grid, n_out, length):
    """First grid line and number of lines the samples of each bin can touch: ``(K, n_out)``
    int32 each (0 lines when every sample is outside ``[-1, length]``)."""
    base = bin_starts(start, bin_size, n_out)
    gridf = tf.cast(grid, tf.float32)[:, None]
    g = tf.maximum(gridf, 1.0)
    first = sample_at(base, 0.0, bin_size[:, None], g)
    last = sample_at(base, g - 1.0, bin_size[:, None], g)
    top = tf.cast(length - 1, tf.float32)
    low = tf.clip_by_value(tf.floor(tf.maximum(first, 0.0)), 0.0, top)
    high = tf.clip_by_value(tf.floor(tf.maximum(last, 0.0)) + 1.0, 0.0, top)
    touches = (last >= -1.0) & (first <= tf.cast(length, tf.float32)) & (gridf > 0)
    count = tf.where(touches, high - low + 1.0, 0.0)
    return tf.cast(low, tf.int32), tf.cast(count, tf.int32)


def _fits(n_y, n_x, bounds):
    """Per RoI: do all its bins' windows fit the kernel's static bounds?"""
    return tf.logical_and(tf.reduce_all(n_y <= bounds[0], axis=1), tf.reduce_all(n_x <= bounds[1], axis=1))


def align_fits(boxes, ph, pw, scale, aligned, height, width, bounds):
    start_h, start_w, bin_h, bin_w, grid_h, grid_w = align_geometry(boxes, ph, pw, scale, -1, aligned)
    _, n_y = _axis_window(start_h, bin_h, grid_h, ph, height)
    _, n_x = _axis_window(start_w, bin_w, grid_w, pw, width)
    return _fits(n_y, n_x, bounds)


def _window_weights(geometry, low_y, low_x, ph, pw, height, width, span):
    """Weights of every bin's window, rows then columns, flattened: ``K*ph*span`` row weights
    then ``K*pw*span`` column weights. Both axes go through one adaptive_weights (one set of
    XLA fusions, about half the compile time of two)."""
    start_h, start_w, bin_h, bin_w, grid_h, grid_w = geometry

    def per_bin(start, bin_size, grid, n_out, length, low):
        base = bin_starts(start, bin_size, n_out)
        shape = tf.shape(base)
        columns = (base, tf.broadcast_to(bin_size[:, None], shape), tf.broadcast_to(tf.cast(grid, tf.float32)[:, None], shape), tf.fill(shape, length), low)
        return [tf.reshape(t, [-1]) for t in columns]

    axes = zip(per_bin(start_h, bin_h, grid_h, ph, height, low_y), per_bin(start_w, bin_w, grid_w, pw, width, low_x))
    base, bin_size, gridf, length, low = (tf.concat(pair, 0) for pair in axes)
    rows = tf.cast(low[:, None] + tf.range(span), tf.float32)
    w = adaptive_weights(base, bin_size, gridf, rows, length) / tf.maximum(gridf, 1.0)[:, None]
    return tf.reshape(w, [-1])


def _window_plan(boxes, ph, pw, scale, aligned, bounds, height, width):
    """Each bin's window along both axes, flat: (first row, rows, first column, columns), with
    no rows or columns for RoIs whose windows do not fit ``bounds`` (the caller fills those in);
    the window weights, flat (rows then columns, ``span`` per bin); and each RoI's tap count,
    the size of its largest window."""
    geometry = align_geometry(boxes, ph, pw, scale, -1, aligned)
    start_h, start_w, bin_h, bin_w, grid_h, grid_w = geometry
    low_y, n_y = _axis_window(start_h, bin_h, grid_h, ph, height)
    low_x, n_x = _axis_window(start_w, bin_w, grid_w, pw, width)
    fits = _fits(n_y, n_x, bounds)[:, None]
    n_y, n_x = tf.where(fits, n_y, 0), tf.where(fits, n_x, 0)
    span = max(bounds)
    weights = _window_weights(geometry, low_y, low_x, ph, pw, height, width, span)
    steps = tf.reduce_max(n_y, 1) * tf.reduce_max(n_x, 1)  # (K,): n_y is (K, ph), n_x (K, pw)
    return tuple(tf.reshape(t, [-1]) for t in (low_y, n_y, low_x, n_x)), weights, steps, span


def align_adaptive_impl(features, boxes, ph, pw, scale, aligned, bounds, spare_row=False):
    """Adaptive RoIAlign straight from the features, doing work in proportion to the RoIs' area.

    Separable sampling gives each bin a window of ``ny x nx`` grid cells with weight
    ``wy[row] * wx[col]`` (the summed bilinear weights of its samples). RoIs are sorted by window
    size and taken ``_ALIGN_GROUP`` at a time; a loop walks the group's largest window
    ``_ALIGN_UNROLL`` taps per step, each step one fused gather-multiply-add over the group's
    bins. So a 1-cell RoI costs 4 taps per bin and the whole map ``(H/ph + 2) x (W/pw + 2)``,
    instead of every RoI paying for the largest one.

    ``spare_row``: give the output one more row and drop it at the end (a copy), for callers
    whose XLA may compile this for 0 boxes: scatters into an empty output do not compile.
    """
    shape = tf.shape(features)
    height, width, channels = shape[1], shape[2], shape[3]
    if boxes.shape[0] == 0:  # the group loop cannot even be traced for a static 0
        return tf.zeros(tf.stack([0, ph, pw, channels]))
    k = tf.shape(boxes)[0]
    # One spare box at the end keeps every per-RoI array non-empty, so the kernel also compiles
    # for a box count that turns out 0 only at run time; writes to its row k are dropped (XLA
    # scatters skip rows out of bounds).
    boxes = tf.concat([boxes, tf.zeros([1, 5], boxes.dtype)], 0)
    (low_y, n_y, low_x, n_x), weights, steps, span = _window_plan(boxes, ph, pw, scale, aligned, bounds, height, width)
    x_weights = (k + 1) * ph * span  # where the column windows start
    order = tf.argsort(steps, direction="DESCENDING")
    group = _ALIGN_GROUP
    n_groups = (k + group - 1) // group
    # The last group is filled up with the last entry of the order again: written twice or, for
    # the spare box, not at all.
    slots = tf.gather(order, tf.minimum(tf.range(tf.maximum(n_groups, 1) * group), k))
    image = tf.cast(boxes[:, 0], tf.int32)
    flat_features = tf.reshape(features, [-1, channels])
    bins = group * ph * pw
    p_of_bin = tf.reshape(tf.broadcast_to(tf.range(ph)[:, None], [ph, pw]), [-1])
    q_of_bin = tf.reshape(tf.broadcast_to(tf.range(pw)[None, :], [ph, pw]), [-1])

    def one_group(i, out):
        ks = tf.slice(slots, [i * group], [group])
        kb = tf.reshape(tf.broadcast_to(ks[:, None], [group, ph * pw]), [-1])  # (bins,)
        row_bin = kb * ph + tf.tile(p_of_bin, [group])
        col_bin = kb * pw + tf.tile(q_of_bin, [group])
        y0, ny = tf.gather(low_y, row_bin), tf.gather(n_y, row_bin)
        x0, nx = tf.gather(low_x, col_bin), tf.gather(n_x, col_bin)
        base = tf.gather(image, kb) * height
        area, nx_safe = ny * nx, tf.maximum(nx, 1)

        def taps(t):
            """Feature rows and weights of taps t .. t + unroll - 1 of every bin's window."""
            tap = t + tf.range(_ALIGN_UNROLL)[:, None]  # (unroll, bins)
            ty = tap // nx_safe
            tx = tap - ty * nx_safe
            inside = tap < area
            ty, tx = tf.where(inside, ty, 0), tf.where(inside, tx, 0)
            w = tf.gather(weights, row_bin * span + ty) * tf.gather(weights, x_weights + col_bin * span + tx)
            return (base + y0 + ty) * width + x0 + tx, tf.where(inside, w, 0.0)

        def step(t, acc, index, weight):
            acc = acc + tf.reduce_sum(tf.gather(flat_features, index) * weight[..., None], axis=0)
            # The next step's taps are computed here and carried, so the fused (bins, C) loop
            # holds only the gathers and adds, not the index math.
            return (t + _ALIGN_UNROLL, acc) + taps(t + _ALIGN_UNROLL)

        limit = tf.gather(steps, ks[0])  # sorted: the group's first RoI has the largest window
        zero = tf.zeros(tf.stack([bins, channels]))
        _, acc, _, _ = tf.while_loop(lambda t, *_: t < limit, step, (tf.constant(0), zero) + taps(tf.constant(0)))
        acc = tf.reshape(acc, tf.stack([group, ph, pw, channels]))
        return i + 1, tf.tensor_scatter_nd_update(out, ks[:, None], acc)

    out = tf.zeros(tf.stack([k + 1 if spare_row else k, ph, pw, channels]))
    _, out = tf.while_loop(lambda i, _: i < n_groups, one_group, (tf.constant(0), out))
    return out[:k] if spare_row else out


align_adaptive_xla = tf.function(align_adaptive_impl, jit_compile=True, reduce_retracing=False)
