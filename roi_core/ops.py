"""Exact, vectorized RoIPool and RoIAlign in TensorFlow (channels last).

Both operators reproduce torchvision.ops.roi_pool / roi_align (CPU kernels) on NHWC data:

* ``roi_pool``: bins of RoIs inside the map (at most ``(H + 2) / ph + 2`` rows) take a compiled
  path: a 1-D sparse table along W answers each bin row with two lookups, and a short static
  chain of maxima over the bin's rows fuses into one XLA loop. Other bins (RoIs much larger than
  the map) use a 2-D sparse table built only to the levels they need. The gradient goes to each
  bin's first maximum in row-major order, as torchvision's strict ``>`` does (a custom gradient;
  index tables are only built in the backward pass).
* ``roi_align``: with a fixed ``sampling_ratio`` every output is a weighted sum of
  ``s * s * 4`` gathered taps, fused by XLA into one loop. With the adaptive ratio, bilinear
  sampling on a Cartesian grid is separable: each RoI becomes a row-weight ``(ph, H)`` and a
  column-weight ``(pw, W)`` matrix holding the summed weights of its samples, contracted with the
  features as a sparse matrix (cost proportional to the RoI's area; dense under XLA).

No ``map_fn`` over RoIs and no Python loop over cells; runs eagerly, in ``tf.function`` and with
``jit_compile=True``.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from .boxes import (
    normalize_output_size,
    validate_boxes,
    validate_features,
    validate_sampling_ratio,
    validate_spatial_scale,
)

_MAX_LEVEL_BITS = 31  # bin lengths are < 2**31


def _in_xla_context() -> bool:
    # XLA needs static shapes: data-dependent sizes (tf.where, level counts) are not allowed.
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _prepare(features, boxes, output_size, spatial_scale):
    ph, pw = normalize_output_size(output_size)
    scale = validate_spatial_scale(spatial_scale)
    features = validate_features(features)
    boxes = validate_boxes(boxes, num_images=features.shape[0])
    return features, boxes, ph, pw, scale


def _div(a, b):
    """float32 a / b, correctly rounded as in C++. In graph mode and under XLA TensorFlow turns
    float32 division into a multiply by the reciprocal (1 ulp off), which moves floor/ceil bin
    edges and sample counts; float64 division then rounding to float32 is exact here."""
    return tf.cast(tf.cast(a, tf.float64) / tf.cast(b, tf.float64), tf.float32)


def _round_half_away(x):
    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def _floor_log2(n):
    """Exact floor(log2(n)) for int32 n >= 1 (0 for n <= 1)."""
    powers = tf.constant([1 << j for j in range(1, _MAX_LEVEL_BITS)], dtype=tf.int32)
    return tf.reduce_sum(tf.cast(n[..., None] >= powers, tf.int32), axis=-1)


# --------------------------------------------------------------------------------------------
# RoIPool
# --------------------------------------------------------------------------------------------

def _pool_bins(boxes, ph, pw, scale, height, width):
    """Clipped half-open bin edges: rows (K, ph) and cols (K, pw), as int32."""
    b = tf.cast(boxes[:, 0], tf.int32)
    coords = _round_half_away(boxes[:, 1:] * scale)
    start_w, start_h, end_w, end_h = (tf.cast(coords[:, i], tf.int32) for i in range(4))
    roi_w = tf.maximum(end_w - start_w + 1, 1)
    roi_h = tf.maximum(end_h - start_h + 1, 1)

    def edges(roi_len, start, n, limit):
        bin_size = _div(tf.cast(roi_len, tf.float32), float(n))
        idx = tf.range(n, dtype=tf.float32)
        lo = tf.cast(tf.floor(idx[None, :] * bin_size[:, None]), tf.int32) + start[:, None]
        hi = tf.cast(tf.math.ceil((idx[None, :] + 1.0) * bin_size[:, None]), tf.int32) + start[:, None]
        return tf.clip_by_value(lo, 0, limit), tf.clip_by_value(hi, 0, limit)

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


def _pool_lookups(features, boxes, ph, pw, scale, with_index, levels=None):
    """The four block lookups of every bin, as flat table rows, plus the empty-bin mask.

    ``levels``: static ``(levels_h, levels_w)`` (Python ints) or None to build only the levels
    the bins need (a data-dependent count)."""
    fshape = tf.shape(features)
    n_img, height, width, channels = fshape[0], fshape[1], fshape[2], fshape[3]
    b, hs, he, ws, we = _pool_bins(boxes, ph, pw, scale, height, width)
    len_h, len_w = he - hs, we - ws  # (K, ph), (K, pw)
    if levels is None:
        levels_h = _num_levels(tf.reduce_max(tf.concat([[1], tf.reshape(len_h, [-1])], 0)), features.shape[1])
        levels_w = _num_levels(tf.reduce_max(tf.concat([[1], tf.reshape(len_w, [-1])], 0)), features.shape[2])
    else:
        levels_h, levels_w = levels
    index = None
    if with_index:
        spatial = tf.range(height * width, dtype=tf.int32)
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


def _pool_forward_impl(features, boxes, ph, pw, scale, levels=None):
    flat_v, _, rows, empty, _ = _pool_lookups(features, boxes, ph, pw, scale, False, levels)
    out = tf.reduce_max(tf.gather(flat_v, rows), axis=3)  # fused into one pass under XLA
    return tf.where(empty[..., None], tf.zeros_like(out), out)


def _pool_argmax_impl(features, boxes, ph, pw, scale, levels=None):
    """Flat spatial index (h * W + w) of each bin's first maximum; -1 for empty bins."""
    flat_v, flat_i, rows, empty, b = _pool_lookups(features, boxes, ph, pw, scale, True, levels)
    values, index = tf.gather(flat_v, rows), tf.gather(flat_i, rows)  # (K, ph, pw, 4, C)
    best_v, best_i = values[:, :, :, 0], index[:, :, :, 0]
    for j in range(1, 4):
        v, i = values[:, :, :, j], index[:, :, :, j]
        better = (v > best_v) | ((v == best_v) & (i < best_i))
        best_v = tf.where(better, v, best_v)
        best_i = tf.where(better, i, best_i)
    return tf.where(empty[..., None], -tf.ones_like(best_i), best_i), b


def _pool_forward_rows(features, boxes, ph, pw, scale, bounds):
    """Forward RoIPool for bins of at most ``max_rows`` rows, ``bounds = (max_rows, levels_w)``:
    a 1-D sparse table along W answers each row of a bin with two lookups, and the bin's rows
    are a short static chain of maxima. XLA fuses the chain into one loop over the output, so
    the only large write is the output itself (a 2-D table costs levels_h x levels_w maps)."""
    max_rows, levels_w = bounds
    shape = tf.shape(features)
    n_img, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    b, hs, he, ws, we = _pool_bins(boxes, ph, pw, scale, height, width)
    len_h, len_w = he - hs, we - ws
    table, _ = _levels_along(features, None, axis=2, count=levels_w)  # (Lw, B, H, W, C)
    flat = tf.reshape(table, [-1, channels])
    c = _floor_log2(tf.maximum(len_w, 1))  # (K, pw)
    left = tf.minimum(ws, width - 1)[:, None, :]
    right = tf.clip_by_value(we - tf.bitwise.left_shift(1, c), 0, width - 1)[:, None, :]
    base = ((c * n_img + b[:, None]) * height)[:, None, :]  # (K, 1, pw)
    out = None
    for i in range(max_rows):
        row = (base + tf.minimum(hs + i, height - 1)[:, :, None]) * width  # (K, ph, pw)
        best = tf.maximum(tf.gather(flat, row + left), tf.gather(flat, row + right))
        best = tf.where((i < len_h)[:, :, None, None], best, -np.inf)
        out = best if out is None else tf.maximum(out, best)
    empty = (len_h[:, :, None] <= 0) | (len_w[:, None, :] <= 0)
    return tf.where(empty[..., None], 0.0, out)


_pool_forward_xla = tf.function(_pool_forward_rows, jit_compile=True, reduce_retracing=False)
_pool_argmax_xla = tf.function(_pool_argmax_impl, jit_compile=True, reduce_retracing=False)


def _fast_bounds(features, ph, pw):
    """Static bounds that hold for every bin of a RoI inside the map (a bin spans at most
    (H + 2) / ph + 2 cells): (max_rows, levels_h, levels_w), or None for unknown sizes."""
    height, width = features.shape[1], features.shape[2]
    if height is None or width is None:
        return None
    max_rows = min(height, -(-(height + 2) // ph) + 2)
    levels_w = min(width.bit_length(), (-(-(width + 2) // pw) + 2).bit_length())
    return max_rows, max_rows.bit_length(), levels_w


def _bucketed(call, boxes, bucket):
    """``call(boxes)`` of an XLA-compiled kernel on boxes padded to one of four sizes per power
    of two, so a changing number of boxes compiles a handful of shapes, not one per count.
    ``bucket`` is for eager callers; a caller's own graph keeps its shapes (XLA has them static)."""
    if not bucket or _in_xla_context():
        return call(boxes)
    k = tf.shape(boxes)[0]
    step = tf.maximum(8, tf.bitwise.left_shift(1, tf.maximum(_floor_log2(tf.maximum(k, 1)) - 2, 0)))
    size = (k + step - 1) // step * step  # at most 25% padding
    out = call(tf.pad(boxes, [[0, size - k], [0, 0]]))
    if isinstance(out, tuple):
        return tuple(t[:k] for t in out)
    return out[:k]


def _pool_dispatch(fast, general, features, boxes, ph, pw, scale, bucket, argmax=False):
    """Run the compiled version when every bin fits its static bounds, else the general one."""
    bounds = _fast_bounds(features, ph, pw)
    if bounds is None:
        return general(features, boxes, ph, pw, scale)
    max_rows, levels_h, levels_w = bounds
    shape = tf.shape(features)
    _, hs, he, ws, we = _pool_bins(boxes, ph, pw, scale, shape[1], shape[2])
    fits = tf.logical_and(tf.reduce_all(he - hs <= max_rows), tf.reduce_all(we - ws < (1 << levels_w)))
    static = (levels_h, levels_w) if argmax else (max_rows, levels_w)
    run_fast = lambda: _bucketed(lambda bx: fast(features, bx, ph, pw, scale, static), boxes, bucket)  # noqa: E731
    run_general = lambda: general(features, boxes, ph, pw, scale)  # noqa: E731
    if tf.executing_eagerly():
        return run_fast() if bool(fits) else run_general()
    return tf.cond(fits, run_fast, run_general)


def roi_pool(features, boxes, output_size, spatial_scale=1.0):
    """Fast R-CNN RoI max pooling, equal to ``torchvision.ops.roi_pool`` on NHWC data.

    Args:
      features: ``(B, H, W, C)`` float tensor or array.
      boxes: ``(K, 5)`` rows ``[batch_index, x1, y1, x2, y2]`` in input-image pixels.
      output_size: ``int`` or ``(ph, pw)``.
      spatial_scale: feature cells per input pixel (``1 / stride``).

    Coordinates are scaled and rounded half away from zero; the end is inclusive (+1); bin
    edges are ``floor``/``ceil``, clipped to the map; an empty bin gives 0.

    Returns:
      ``(K, ph, pw, C)`` float32 tensor.
    """
    features, boxes, ph, pw, scale = _prepare(features, boxes, output_size, spatial_scale)
    if tf.executing_eagerly():  # one compiled graph instead of hundreds of eager ops
        # The scale as a tensor: a new image size must not trigger a new trace.
        return _roi_pool_graph(features, boxes, ph, pw, tf.constant(scale, tf.float32), True)
    return _roi_pool_core(features, boxes, ph, pw, scale, False)


def _roi_pool_core(features, boxes, ph, pw, scale, bucket):
    """``bucket``: pad the box count for the compiled kernel (eager callers, whose count changes
    from call to call); a caller's own graph keeps its shapes and skips the copy."""
    boxes = tf.stop_gradient(boxes)

    @tf.custom_gradient
    def pool(feats):
        out = _pool_dispatch(_pool_forward_xla, _pool_forward_impl, feats, boxes, ph, pw, scale, bucket)

        def grad(upstream):
            argmax, b = _pool_dispatch(_pool_argmax_xla, _pool_argmax_impl, feats, boxes, ph, pw, scale, bucket, True)
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


_roi_pool_graph = tf.function(_roi_pool_core, reduce_retracing=True)


# --------------------------------------------------------------------------------------------
# RoIAlign
# --------------------------------------------------------------------------------------------

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


def _axis_weights(start, bin_size, grid, n_out, length, sampling_ratio):
    """Summed bilinear weights of each bin's samples on each grid line: ``(K, n_out, length)``.

    ``start``/``bin_size`` are ``(K,)`` float32, ``grid`` ``(K,)`` int32 samples per bin.
    Sample positions use torchvision's float32 expression
    ``start + p * bin + ((i + .5) * bin) / grid``; each weight is divided by ``max(grid, 1)``.
    """
    p = tf.range(n_out, dtype=tf.float32)
    base = start[:, None] + p[None, :] * bin_size[:, None]  # (K, P)
    rows = tf.cast(tf.range(length), tf.float32)  # (L,)
    gridf = tf.cast(grid, tf.float32)
    if sampling_ratio > 0:
        i = tf.range(sampling_ratio, dtype=tf.float32)
        y = base[:, :, None] + _div((i[None, None, :] + 0.5) * bin_size[:, None, None], gridf[:, None, None])
        w = _tap_weight(y[:, :, :, None], rows[None, None, None, :], length)  # (K, P, S, L)
        w = tf.reduce_sum(w, axis=2)
    else:
        # Only samples within one cell of a grid line touch it: enumerate a few candidates
        # around the line instead of every sample (keeps shapes static for any RoI size).
        safe_step = tf.where(gridf > 0, _div(bin_size, tf.maximum(gridf, 1.0)), 1.0)  # (K,)
        approx = (rows[None, None, :] - 1.0 - base[:, :, None]) / safe_step[:, None, None] - 0.5
        approx = tf.where(tf.math.is_finite(approx), approx, 0.0)
        first = tf.floor(tf.clip_by_value(approx, -4.0, 2.0**30)) - 1.0
        upper = tf.maximum(gridf - _CANDIDATES, 0.0)[:, None, None]
        first = tf.clip_by_value(first, 0.0, upper)  # (K, P, L)
        i = first[..., None] + tf.range(_CANDIDATES, dtype=tf.float32)  # (K, P, L, S)
        g = gridf[:, None, None, None]
        y = base[:, :, None, None] + _div((i + 0.5) * bin_size[:, None, None, None], g)
        w = _tap_weight(y, rows[None, None, :, None], length)
        w = tf.reduce_sum(tf.where(i < g, w, 0.0), axis=-1)
    return w / tf.maximum(gridf, 1.0)[:, None, None]


def _align_geometry(boxes, ph, pw, scale, sampling_ratio, aligned):
    """Per RoI: start_h, start_w, bin_h, bin_w (float32) and samples per bin grid_h, grid_w."""
    offset = 0.5 if aligned else 0.0
    coords = boxes[:, 1:] * scale - offset
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


def _align_weights(boxes, ph, pw, scale, sampling_ratio, aligned, height, width):
    start_h, start_w, bin_h, bin_w, grid_h, grid_w = _align_geometry(boxes, ph, pw, scale, sampling_ratio, aligned)
    wy = _axis_weights(start_h, bin_h, grid_h, ph, height, sampling_ratio)
    wx = _axis_weights(start_w, bin_w, grid_w, pw, width, sampling_ratio)
    return tf.stop_gradient(wy), tf.stop_gradient(wx)


def _align_fixed_impl(features, boxes, ph, pw, scale, sampling_ratio, aligned):
    """RoIAlign with a fixed number of samples per bin, straight from the samples: every output
    is a weighted sum of s*s*4 gathered taps, which XLA fuses into one pass (no intermediate)."""
    s = sampling_ratio
    shape = tf.shape(features)
    height, width, channels = shape[1], shape[2], shape[3]
    start_h, start_w, bin_h, bin_w, _, _ = _align_geometry(boxes, ph, pw, scale, s, aligned)
    i = tf.range(s, dtype=tf.float32) + 0.5

    def axis(start, bin_size, n_out, length):
        base = start[:, None] + tf.range(n_out, dtype=tf.float32)[None, :] * bin_size[:, None]  # (K, n)
        pos = base[:, :, None] + _div(i[None, None, :] * bin_size[:, None, None], float(s))  # (K, n, s)
        low, high, w_low, w_high = _taps(pos, length)
        index = tf.cast(tf.stack([low, high], axis=-1), tf.int32)  # (K, n, s, 2)
        return index, tf.stack([w_low, w_high], axis=-1)

    rows, w_rows = axis(start_h, bin_h, ph, height)
    cols, w_cols = axis(start_w, bin_w, pw, width)
    b = tf.cast(boxes[:, 0], tf.int32)
    flat_features = tf.reshape(features, [-1, channels])
    row_base = (b[:, None, None, None] * height + rows) * width  # (K, ph, s, 2)
    out = None
    # One gather per (sample row, sample column, tap): a chain of elementwise adds XLA fuses
    # into a single loop over the output, never materializing the s*s*4 gathered copies.
    for iy in range(s):
        for ty in range(2):
            for ix in range(s):
                for tx in range(2):
                    flat = row_base[:, :, None, iy, ty] + cols[:, None, :, ix, tx]  # (K, ph, pw)
                    weight = w_rows[:, :, None, iy, ty] * w_cols[:, None, :, ix, tx]
                    term = tf.gather(flat_features, flat) * weight[..., None]
                    out = term if out is None else out + term
    return out / float(s * s)


_align_fixed_xla = tf.function(_align_fixed_impl, jit_compile=True, reduce_retracing=False)


def _contract_dense(features, b, wy, wx):
    """out[k, p, q] = sum_hw wy[k, p, h] wx[k, q, w] F[b_k, h, w] with static shapes (XLA)."""
    shape = tf.shape(features)
    n_img, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    k, ph = tf.shape(wy)[0], tf.shape(wy)[1]
    one_hot = tf.one_hot(b, n_img, dtype=tf.float32)  # (K, B)
    wyb = tf.reshape(wy[:, :, None, :] * one_hot[:, None, :, None], [k * ph, n_img * height])
    rows = tf.matmul(wyb, tf.reshape(features, [n_img * height, width * channels]))
    rows = tf.reshape(rows, [k, ph, width, channels])
    return tf.einsum("kpwc,kqw->kpqc", rows, wx)


def _contract_sparse(features, b, wy, wx):
    """Same contraction as a sparse (K*ph*pw, B*H*W) matrix times the (B*H*W, C) features:
    work proportional to the area the RoIs cover, not to the map."""
    shape = tf.shape(features)
    n_img, height, width, channels = (tf.cast(shape[i], tf.int64) for i in range(4))
    k = tf.shape(wy, out_type=tf.int64)[0]
    ph, pw = tf.shape(wy, out_type=tf.int64)[1], tf.shape(wx, out_type=tf.int64)[1]
    ny = tf.where(wy != 0.0)  # (Ny, 3) [k, p, h], sorted by k
    nx = tf.where(wx != 0.0)  # (Nx, 3) [k, q, w], sorted by k
    vy, vx = tf.gather_nd(wy, ny), tf.gather_nd(wx, nx)
    count_x = tf.math.bincount(tf.cast(nx[:, 0], tf.int32), minlength=tf.cast(k, tf.int32), maxlength=tf.cast(k, tf.int32), dtype=tf.int64)
    start_x = tf.cumsum(count_x, exclusive=True)
    ky = ny[:, 0]
    lens = tf.gather(count_x, ky)
    starts = tf.gather(start_x, ky)
    x_sel = tf.ragged.range(starts, starts + lens).flat_values
    y_sel = tf.repeat(tf.range(tf.shape(ny, out_type=tf.int64)[0]), lens)
    pick_y = tf.gather(ny, y_sel)
    pick_x = tf.gather(nx, x_sel)
    kk = pick_y[:, 0]
    row = (kk * ph + pick_y[:, 1]) * pw + pick_x[:, 1]
    col = (tf.gather(tf.cast(b, tf.int64), kk) * height + pick_y[:, 2]) * width + pick_x[:, 2]
    val = tf.gather(vy, y_sel) * tf.gather(vx, x_sel)
    matrix = tf.SparseTensor(tf.stack([row, col], axis=1), val, tf.stack([k * ph * pw, n_img * height * width]))
    out = tf.sparse.sparse_dense_matmul(matrix, tf.reshape(features, [-1, shape[3]]))
    return tf.reshape(out, tf.stack([k, ph, pw, channels]))


def roi_align(features, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign, equal to ``torchvision.ops.roi_align`` on NHWC data.

    Args:
      features: ``(B, H, W, C)`` float tensor or array.
      boxes: ``(K, 5)`` rows ``[batch_index, x1, y1, x2, y2]`` in input-image pixels.
      output_size: ``int`` or ``(ph, pw)``.
      spatial_scale: feature cells per input pixel.
      sampling_ratio: samples per bin along each axis; ``<= 0`` is adaptive,
        ``ceil(roi_size / output_size)``.
      aligned: shift boxes by half a pixel (``-0.5``) so that pixel centres line up.

    Each bin averages bilinear samples; samples outside ``[-1, H] x [-1, W]`` count as 0 and
    are still counted in the average, as in torchvision. With ``aligned=False`` RoI sizes are
    clamped to at least 1.

    Returns:
      ``(K, ph, pw, C)`` float32 tensor.
    """
    features, boxes, ph, pw, scale = _prepare(features, boxes, output_size, spatial_scale)
    sampling_ratio = validate_sampling_ratio(sampling_ratio)
    if tf.executing_eagerly():  # one compiled graph instead of hundreds of eager ops
        scale_t = tf.constant(scale, tf.float32)  # a tensor: new scales reuse the trace
        return _roi_align_graph(features, boxes, ph, pw, scale_t, sampling_ratio, bool(aligned), False, True)
    return _roi_align_core(features, boxes, ph, pw, scale, sampling_ratio, bool(aligned), _in_xla_context(), False)


def _roi_align_core(features, boxes, ph, pw, scale, sampling_ratio, aligned, xla, bucket):
    """``xla``: contract densely (static shapes); it is part of the trace key on purpose.
    ``bucket``: pad the box count for the compiled kernel, as for roi_pool."""
    boxes = tf.stop_gradient(boxes)
    if sampling_ratio > 0:  # a fixed sample count: the fused direct form is the fastest
        if xla:
            return _align_fixed_impl(features, boxes, ph, pw, scale, sampling_ratio, aligned)
        return _bucketed(lambda bx: _align_fixed_xla(features, bx, ph, pw, scale, sampling_ratio, aligned), boxes, bucket)
    shape = tf.shape(features)
    wy, wx = _align_weights(boxes, ph, pw, scale, sampling_ratio, aligned, shape[1], shape[2])
    b = tf.cast(boxes[:, 0], tf.int32)
    if xla:
        return _contract_dense(features, b, wy, wx)
    return _contract_sparse(features, b, wy, wx)


_roi_align_graph = tf.function(_roi_align_core, reduce_retracing=True)
