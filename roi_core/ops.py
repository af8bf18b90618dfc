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
  sampling on a Cartesian grid is separable: each bin touches a window of grid cells whose
  weight is (summed row weight) x (summed column weight). A compiled kernel sorts the RoIs by
  window size and walks 16 of them at a time through their windows, so the work follows each
  RoI's area. RoIs well beyond the map (windows longer than the kernel's static bound) are
  contracted as a sparse matrix instead (dense under the caller's XLA). The gradient is the
  transposed contraction.

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


# Eager calls that produce fewer output values than this run uncompiled paths. Compiling a
# kernel costs about a second for each new feature-map shape and box-count bucket, which
# interactive and variable-size eager use (the GUI, an export over images of many sizes) never
# earns back; graph callers (tf.function, Keras) always get the compiled kernels.
EAGER_COMPILE_MIN_OUTPUTS = 1 << 21


def _worth_compiling(features, boxes, ph, pw) -> bool:
    return boxes.shape[0] * ph * pw * features.shape[3] >= EAGER_COMPILE_MIN_OUTPUTS


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


def _pool_dispatch(fast, general, features, boxes, ph, pw, scale, bucket, bounds, argmax=False):
    """Run the compiled version when every bin fits ``bounds`` (from _fast_bounds), else the
    general one."""
    if bounds is None:
        return general(features, boxes, ph, pw, scale)
    max_rows, levels_h, levels_w = bounds
    shape = tf.shape(features)
    _, hs, he, ws, we = _pool_bins(boxes, ph, pw, scale, shape[1], shape[2])
    fits = tf.logical_and(tf.reduce_all(he - hs <= max_rows), tf.reduce_all(we - ws < (1 << levels_w)))
    static = (levels_h, levels_w) if argmax else (max_rows, levels_w)
    run_fast = lambda: _bucketed(lambda bx: fast(features, bx, ph, pw, scale, static), boxes, bucket)  # noqa: E731
    run_general = lambda: general(features, boxes, ph, pw, scale)  # noqa: E731
    return tf.cond(fits, run_fast, run_general)  # eagerly too, tf.cond runs just the branch taken


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
    # Static bounds come from the shape here: the eager graph below relaxes its shapes to None
    # once a second image size comes by, and would lose them. None: the general path only.
    if tf.executing_eagerly():  # one graph instead of hundreds of eager ops
        bounds = _fast_bounds(features, ph, pw) if _worth_compiling(features, boxes, ph, pw) else None
        # The scale as a tensor: a new image size must not trigger a new trace.
        return _roi_pool_graph(features, boxes, ph, pw, tf.constant(scale, tf.float32), True, bounds)
    return _roi_pool_core(features, boxes, ph, pw, scale, False, _fast_bounds(features, ph, pw))


def _roi_pool_core(features, boxes, ph, pw, scale, bucket, bounds):
    """``bucket``: pad the box count for the compiled kernel (eager callers, whose count changes
    from call to call); a caller's own graph keeps its shapes and skips the copy."""
    boxes = tf.stop_gradient(boxes)

    @tf.custom_gradient
    def pool(feats):
        out = _pool_dispatch(_pool_forward_xla, _pool_forward_impl, feats, boxes, ph, pw, scale, bucket, bounds)

        def grad(upstream):
            argmax, b = _pool_dispatch(_pool_argmax_xla, _pool_argmax_impl, feats, boxes, ph, pw, scale, bucket, bounds, True)
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


def _bin_starts(start, bin_size, n_out):
    """``(K, n_out)``: where each bin starts, torchvision's float32 ``start + p * bin``."""
    return start[:, None] + tf.range(n_out, dtype=tf.float32)[None, :] * bin_size[:, None]


def _sample_at(base, i, bin_size, grid):
    """Sample ``i`` (float) of a bin starting at ``base``: torchvision's float32
    ``base + ((i + .5) * bin) / grid``. Windows, weights and taps all use this one expression,
    so that they agree to the last bit."""
    return base + _div((i + 0.5) * bin_size, grid)


def _axis_weights(start, bin_size, grid, n_out, length, sampling_ratio, rows=None):
    """Summed bilinear weights of each bin's samples on each grid line: ``(K, n_out, L)``.

    ``start``/``bin_size`` are ``(K,)`` float32, ``grid`` ``(K,)`` int32 samples per bin.
    ``rows``: the grid lines to weigh, ``(K, n_out, L)`` int32 (a window per bin); by default
    the whole axis, ``L = length``.
    Sample positions use torchvision's float32 expression
    ``start + p * bin + ((i + .5) * bin) / grid``; each weight is divided by ``max(grid, 1)``.
    """
    base = _bin_starts(start, bin_size, n_out)  # (K, P)
    rows = tf.range(length)[None, None, :] if rows is None else rows
    rows = tf.cast(rows, tf.float32)  # (K or 1, P or 1, L)
    gridf = tf.cast(grid, tf.float32)
    if sampling_ratio > 0:
        i = tf.range(sampling_ratio, dtype=tf.float32)
        y = _sample_at(base[:, :, None], i[None, None, :], bin_size[:, None, None], gridf[:, None, None])
        w = _tap_weight(y[:, :, :, None], rows[:, :, None, :], length)  # (K, P, S, L)
        w = tf.reduce_sum(w, axis=2)
    else:
        w = _adaptive_weights(base, bin_size[:, None], gridf[:, None], rows, length)
    return w / tf.maximum(gridf, 1.0)[:, None, None]


def _adaptive_weights(base, bin_size, gridf, rows, length):
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
    y = _sample_at(base[..., None, None], i, bin_size[..., None, None], g)
    length = tf.convert_to_tensor(length)
    w = _tap_weight(y, rows[..., None], length[..., None, None] if length.shape.rank else length)
    return tf.reduce_sum(tf.where(i < g, w, 0.0), axis=-1)


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
    i = tf.range(s, dtype=tf.float32)

    def axis(start, bin_size, n_out, length):
        base = _bin_starts(start, bin_size, n_out)  # (K, n)
        pos = _sample_at(base[:, :, None], i[None, None, :], bin_size[:, None, None], float(s))  # (K, n, s)
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


_ALIGN_GROUP = 16  # RoIs per pass of the adaptive kernel (16 * 49 bins of C channels stay in cache)
_ALIGN_UNROLL = 4  # taps gathered per loop step


def _align_bounds(features, ph, pw):
    """Static window lengths (rows, columns) that hold for every adaptive bin of RoIs up to
    1.5x the map: a bin of ``s`` cells touches at most ``floor(s) + 2`` grid lines. None for
    unknown sizes. Larger RoIs take the sparse path."""
    height, width = features.shape[1], features.shape[2]
    if height is None or width is None:
        return None
    return min(height, -(-3 * (height + 1) // (2 * ph)) + 2), min(width, -(-3 * (width + 1) // (2 * pw)) + 2)


def _axis_window(start, bin_size, grid, n_out, length):
    """First grid line and number of lines the samples of each bin can touch: ``(K, n_out)``
    int32 each (0 lines when every sample is outside ``[-1, length]``)."""
    base = _bin_starts(start, bin_size, n_out)
    gridf = tf.cast(grid, tf.float32)[:, None]
    g = tf.maximum(gridf, 1.0)
    first = _sample_at(base, 0.0, bin_size[:, None], g)
    last = _sample_at(base, g - 1.0, bin_size[:, None], g)
    top = tf.cast(length - 1, tf.float32)
    low = tf.clip_by_value(tf.floor(tf.maximum(first, 0.0)), 0.0, top)
    high = tf.clip_by_value(tf.floor(tf.maximum(last, 0.0)) + 1.0, 0.0, top)
    touches = (last >= -1.0) & (first <= tf.cast(length, tf.float32)) & (gridf > 0)
    count = tf.where(touches, high - low + 1.0, 0.0)
    return tf.cast(low, tf.int32), tf.cast(count, tf.int32)


def _fits(n_y, n_x, bounds):
    """Per RoI: do all its bins' windows fit the kernel's static bounds?"""
    return tf.logical_and(tf.reduce_all(n_y <= bounds[0], axis=1), tf.reduce_all(n_x <= bounds[1], axis=1))


def _align_fits(boxes, ph, pw, scale, aligned, height, width, bounds):
    start_h, start_w, bin_h, bin_w, grid_h, grid_w = _align_geometry(boxes, ph, pw, scale, -1, aligned)
    _, n_y = _axis_window(start_h, bin_h, grid_h, ph, height)
    _, n_x = _axis_window(start_w, bin_w, grid_w, pw, width)
    return _fits(n_y, n_x, bounds)


def _window_weights(geometry, low_y, low_x, ph, pw, height, width, span):
    """Weights of every bin's window, rows then columns, flattened: ``K*ph*span`` row weights
    then ``K*pw*span`` column weights. Both axes go through one _adaptive_weights (one set of
    XLA fusions, about half the compile time of two)."""
    start_h, start_w, bin_h, bin_w, grid_h, grid_w = geometry

    def per_bin(start, bin_size, grid, n_out, length, low):
        base = _bin_starts(start, bin_size, n_out)
        shape = tf.shape(base)
        columns = (base, tf.broadcast_to(bin_size[:, None], shape), tf.broadcast_to(tf.cast(grid, tf.float32)[:, None], shape), tf.fill(shape, length), low)
        return [tf.reshape(t, [-1]) for t in columns]

    axes = zip(per_bin(start_h, bin_h, grid_h, ph, height, low_y), per_bin(start_w, bin_w, grid_w, pw, width, low_x))
    base, bin_size, gridf, length, low = (tf.concat(pair, 0) for pair in axes)
    rows = tf.cast(low[:, None] + tf.range(span), tf.float32)
    w = _adaptive_weights(base, bin_size, gridf, rows, length) / tf.maximum(gridf, 1.0)[:, None]
    return tf.reshape(w, [-1])


def _align_adaptive_impl(features, boxes, ph, pw, scale, aligned, bounds, spare_row=False):
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
    bound_y, bound_x = bounds
    shape = tf.shape(features)
    height, width, channels = shape[1], shape[2], shape[3]
    if boxes.shape[0] == 0:  # the group loop cannot even be traced for a static 0
        return tf.zeros(tf.stack([0, ph, pw, channels]))
    k = tf.shape(boxes)[0]
    # One spare box at the end keeps every per-RoI array non-empty, so the kernel also compiles
    # for a box count that turns out 0 only at run time; writes to its row k are dropped (XLA
    # scatters skip rows out of bounds).
    boxes = tf.concat([boxes, tf.zeros([1, 5], boxes.dtype)], 0)
    geometry = _align_geometry(boxes, ph, pw, scale, -1, aligned)
    start_h, start_w, bin_h, bin_w, grid_h, grid_w = geometry
    low_y, n_y = _axis_window(start_h, bin_h, grid_h, ph, height)
    low_x, n_x = _axis_window(start_w, bin_w, grid_w, pw, width)
    fits = _fits(n_y, n_x, bounds)[:, None]  # RoIs that do not fit are left at 0 for the caller
    n_y, n_x = tf.where(fits, n_y, 0), tf.where(fits, n_x, 0)
    span = max(bound_y, bound_x)
    weights = _window_weights(geometry, low_y, low_x, ph, pw, height, width, span)  # flat
    x_weights = (k + 1) * ph * span  # where the column windows start
    low_y, n_y, low_x, n_x = (tf.reshape(t, [-1]) for t in (low_y, n_y, low_x, n_x))
    steps = tf.reduce_max(tf.reshape(n_y, [k + 1, ph]), 1) * tf.reduce_max(tf.reshape(n_x, [k + 1, pw]), 1)
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


_align_adaptive_xla = tf.function(_align_adaptive_impl, jit_compile=True, reduce_retracing=False)


def _image_rows(b, n_img, wy):
    """``(K*ph, B*H)``: each RoI's row weights placed at its image's rows."""
    k, ph = tf.shape(wy)[0], tf.shape(wy)[1]
    one_hot = tf.one_hot(b, n_img, dtype=tf.float32)  # (K, B)
    return tf.reshape(wy[:, :, None, :] * one_hot[:, None, :, None], tf.stack([k * ph, n_img * tf.shape(wy)[2]]))


def _contract_dense(features, b, wy, wx):
    """out[k, p, q] = sum_hw wy[k, p, h] wx[k, q, w] F[b_k, h, w] with static shapes (XLA)."""
    shape = tf.shape(features)
    n_img, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    k, ph = tf.shape(wy)[0], tf.shape(wy)[1]
    rows = tf.matmul(_image_rows(b, n_img, wy), tf.reshape(features, [n_img * height, width * channels]))
    rows = tf.reshape(rows, [k, ph, width, channels])
    return tf.einsum("kpwc,kqw->kpqc", rows, wx)


def _contract_dense_vjp(features, b, wy, wx, upstream):
    """Gradient of _contract_dense with respect to the features."""
    shape = tf.shape(features)
    n_img, width, channels = shape[0], shape[2], shape[3]
    rows = tf.einsum("kpqc,kqw->kpwc", upstream, wx)
    rows = tf.reshape(rows, [-1, width * channels])
    grad = tf.matmul(_image_rows(b, n_img, wy), rows, transpose_a=True)
    return tf.reshape(grad, shape)


def _sparse_weights(features, b, wy, wx):
    """The contraction as a sparse ``(K*ph*pw, B*H*W)`` matrix: its work is proportional to the
    area the RoIs cover, not to the map."""
    shape = tf.shape(features)
    n_img, height, width = (tf.cast(shape[i], tf.int64) for i in range(3))
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
    return tf.SparseTensor(tf.stack([row, col], axis=1), val, tf.stack([k * ph * pw, n_img * height * width]))


def _contract_sparse(features, b, wy, wx):
    shape = tf.shape(features)
    out = tf.sparse.sparse_dense_matmul(_sparse_weights(features, b, wy, wx), tf.reshape(features, [-1, shape[3]]))
    return tf.reshape(out, tf.stack([tf.shape(wy)[0], tf.shape(wy)[1], tf.shape(wx)[1], shape[3]]))


def _contract_sparse_vjp(features, b, wy, wx, upstream):
    shape = tf.shape(features)
    matrix = _sparse_weights(features, b, wy, wx)
    grad = tf.sparse.sparse_dense_matmul(matrix, tf.reshape(upstream, [-1, shape[3]]), adjoint_a=True)
    return tf.reshape(grad, shape)


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
    aligned = bool(aligned)
    if tf.executing_eagerly():  # one graph instead of hundreds of eager ops
        compiled = _worth_compiling(features, boxes, ph, pw)
        bounds = _align_bounds(features, ph, pw) if compiled else None  # from the shape here, as in roi_pool
        scale_t = tf.constant(scale, tf.float32)  # a tensor: new scales reuse the trace
        return _roi_align_graph(features, boxes, ph, pw, scale_t, sampling_ratio, aligned, False, True, bounds, compiled)
    xla = _in_xla_context()
    return _roi_align_core(features, boxes, ph, pw, scale, sampling_ratio, aligned, xla, False, _align_bounds(features, ph, pw), True)


def _roi_align_core(features, boxes, ph, pw, scale, sampling_ratio, aligned, xla, bucket, bounds, compiled):
    """``xla``: inside the caller's XLA (static shapes, no sparse ops); part of the trace key on
    purpose. ``bucket``: pad the box count for the compiled kernel, as for roi_pool.
    ``bounds``: static window bounds of the adaptive kernel (_align_bounds) or None.
    ``compiled``: False runs only the uncompiled (sparse) contraction."""
    boxes = tf.stop_gradient(boxes)
    if sampling_ratio > 0 and compiled:  # a fixed sample count: the fused direct form is the fastest
        if xla:
            return _align_fixed_impl(features, boxes, ph, pw, scale, sampling_ratio, aligned)
        return _bucketed(lambda bx: _align_fixed_xla(features, bx, ph, pw, scale, sampling_ratio, aligned), boxes, bucket)
    contract, vjp = (_contract_dense, _contract_dense_vjp) if xla else (_contract_sparse, _contract_sparse_vjp)

    def weights(feats, bx):
        shape = tf.shape(feats)
        return _align_weights(bx, ph, pw, scale, sampling_ratio, aligned, shape[1], shape[2])

    @tf.custom_gradient
    def align(feats):
        general = lambda bx: contract(feats, tf.cast(bx[:, 0], tf.int32), *weights(feats, bx))  # noqa: E731
        if sampling_ratio > 0 or not compiled:
            out = general(boxes)
        else:
            out = _align_adaptive_dispatch(feats, boxes, ph, pw, scale, aligned, xla, bucket, bounds, general)

        def grad(upstream):
            return vjp(feats, tf.cast(boxes[:, 0], tf.int32), *weights(feats, boxes), upstream)

        return out, grad

    return align(features)


def _align_adaptive_dispatch(features, boxes, ph, pw, scale, aligned, xla, bucket, bounds, general):
    """The windowed kernel for RoIs whose windows fit ``bounds``; ``general(boxes)`` (the sparse
    or, under XLA, the dense contraction) for the rest: RoIs well beyond the map."""
    if bounds is None:
        return general(boxes)
    shape = tf.shape(features)
    fits = _align_fits(boxes, ph, pw, scale, aligned, shape[1], shape[2], bounds)
    all_fit = tf.reduce_all(fits)
    if xla:  # no data-dependent subsets under XLA: all or nothing
        spare = boxes.shape[0] is None
        kernel = lambda: _align_adaptive_impl(features, boxes, ph, pw, scale, aligned, bounds, spare)  # noqa: E731
        return tf.cond(all_fit, kernel, lambda: general(boxes))
    run = lambda: _bucketed(lambda bx: _align_adaptive_xla(features, bx, ph, pw, scale, aligned, bounds), boxes, bucket)  # noqa: E731
    if boxes.shape[0] is not None:
        out = run()
    else:  # a count known only at run time: never compile the kernel for 0 boxes
        empty = lambda: tf.zeros(tf.stack([0, ph, pw, tf.shape(features)[3]]))  # noqa: E731
        out = tf.cond(tf.shape(boxes)[0] > 0, run, empty)

    def patch():  # the kernel left the RoIs that do not fit at 0
        big = tf.where(tf.logical_not(fits))[:, 0]
        return tf.tensor_scatter_nd_update(out, big[:, None], general(tf.gather(boxes, big)))

    return tf.cond(all_fit, lambda: out, patch)


_roi_align_graph = tf.function(_roi_align_core, reduce_retracing=True)
