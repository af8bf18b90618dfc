"""RoIAlign that walks each bin's samples in torchvision's order: the same float32 sums, bit for
bit, in every call mode (uncompiled graphs, separately compiled kernels, a caller's XLA).

torchvision's CPU kernel adds each sample ``w1*v1 + w2*v2 + w3*v3 + w4*v4`` (each product
rounded, summed left to right) to the bin, samples row by row, then divides by the count. Here
a loop takes one sample index ``t`` per step for every bin at once (``t = iy * grid_w + ix``),
gathers its four taps as rows of C channels and adds it; RoIs are sorted by sample count and
walked ``group`` at a time, so each group loops only as long as its own largest grid.

Nothing may change those sums. XLA contracts a multiply and a following add into one FMA,
which skips the product's rounding; and Grappler merges chains of adds into one AddN, whose
order is not the chain's (seen with two samples unrolled per step). So under XLA every product,
and in every mode every sample, passes through a bitwise AND with a mask that is loop data
(all bits, or none for a skipped sample), which neither sees through; uncompiled graphs take one
sample per step. Bin starts (``start + p * bin``, a product into an add) go through
``_numerics.mul``, and divisions through ``_numerics.div``.
"""
from __future__ import annotations

import functools

import tensorflow as tf

from ._align_kernels import _taps, align_geometry, bin_starts, sample_at
from ._numerics import in_xla_context
from .compile_policy import own_graph

MAX_SAMPLES_PER_BIN = 1024  # larger grids (a box many times the map) take the contraction


def walk_counts(boxes, ph, pw, scale, sampling_ratio, aligned):
    """Samples per bin of each RoI, ``(K,)`` int32, clipped to ``MAX_SAMPLES_PER_BIN + 1``."""
    *_, grid_h, grid_w = align_geometry(boxes, ph, pw, scale, sampling_ratio, aligned)
    return _grid_counts(grid_h, grid_w)


def _grid_counts(grid_h, grid_w):
    cap = MAX_SAMPLES_PER_BIN + 1  # the product of two clipped grids stays far from int32's end
    return tf.minimum(grid_h, cap) * tf.minimum(grid_w, cap)


@functools.lru_cache(maxsize=None)
def any_beyond_walk_graph(ph, pw, sampling_ratio, aligned):
    """``f(boxes, scale)``: does any RoI have more than MAX_SAMPLES_PER_BIN samples per bin?
    One graph for any box count (an eager caller's question, asked on every call)."""
    spec = (tf.TensorSpec([None, 5], tf.float32), tf.TensorSpec([], tf.float32))

    def beyond(boxes, scale):
        return tf.reduce_any(walk_counts(boxes, ph, pw, scale, sampling_ratio, aligned) > MAX_SAMPLES_PER_BIN)

    return own_graph(beyond, spec)


def _axis_taps(base, bin_size, grid, index, length):
    """Sample ``index`` (int32, per bin) of bins starting at ``base``: low and high grid lines
    (int32), their weights and whether the sample is inside ``[-1, length]``."""
    y = sample_at(base, tf.cast(index, tf.float32), bin_size, tf.cast(grid, tf.float32))
    low, high, w_low, w_high = _taps(y, length)
    inside = (y >= -1.0) & (y <= tf.cast(length, tf.float32))
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), w_low, w_high, inside


def _masked(values, mask):
    """``values`` where ``mask`` (int32, all bits or none, broadcast over the last axis) is set,
    else +0: a bitwise AND, which neither XLA nor Grappler sees through."""
    return tf.bitcast(tf.bitwise.bitwise_and(tf.bitcast(values, tf.int32), mask[..., None]), tf.float32)


def walk_impl(features, boxes, ph, pw, scale, sampling_ratio, aligned, *, group=None, unroll=1, grouped_channels=False):
    """RoIAlign of every RoI whose grid has at most ``MAX_SAMPLES_PER_BIN`` samples per bin;
    the others come out 0 (the caller patches them).

    ``group``: RoIs per pass, sorted by sample count (compiled kernels); None walks all RoIs in
    one pass (uncompiled graphs, where each loop step costs a few dozen op launches; and a
    fixed grid of ``unroll`` samples, which then takes one step).
    ``unroll``: samples per loop step (1 outside XLA, see above).
    ``grouped_channels``: position-sensitive RoIAlign, ``C = ph * pw * C_out`` in torchvision's
    channel order; bin ``(p, q)`` reads only its own ``C_out`` channels.
    """
    if 0 < sampling_ratio and sampling_ratio**2 < unroll:
        # Steps past a fixed grid's last sample have constant masks; XLA then zeroed the whole
        # output (seen with a 1x1 grid and 2 samples per step).
        raise ValueError(f"unroll {unroll} exceeds the {sampling_ratio}x{sampling_ratio} grid")
    shape = tf.shape(features)
    n_img, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    bins_per_roi = ph * pw
    if boxes.shape[0] == 0:  # the group loop cannot even be traced for a static 0
        return tf.zeros(tf.stack([0, ph, pw, channels // bins_per_roi if grouped_channels else channels]))
    # A count known only when XLA compiles may be 0 there, and scatters into an empty output
    # do not compile: one spare box at the end, dropped at the end (a copy).
    spare = group is not None and boxes.shape[0] is None
    if spare:
        boxes = tf.concat([boxes, tf.zeros([1, 5], boxes.dtype)], 0)
    if grouped_channels:
        c_out = channels // bins_per_roi
        features = tf.transpose(tf.reshape(features, tf.stack([n_img, height, width, c_out, bins_per_roi])), [0, 1, 2, 4, 3])
        flat = tf.reshape(features, tf.stack([-1, c_out]))
    else:
        c_out = channels
        flat = tf.reshape(features, tf.stack([-1, channels]))
    k = tf.shape(boxes)[0]
    start_h, start_w, bin_h, bin_w, grid_h, grid_w = align_geometry(boxes, ph, pw, scale, sampling_ratio, aligned)
    count = _grid_counts(grid_h, grid_w)
    walked = tf.where(count <= MAX_SAMPLES_PER_BIN, count, 0)
    base_h, base_w = bin_starts(start_h, bin_h, ph), bin_starts(start_w, bin_w, pw)  # (K, ph), (K, pw)
    image = tf.cast(boxes[:, 0], tf.int32)
    cell_group = tf.reshape(tf.range(bins_per_roi), [ph, pw]) if grouped_channels else None
    xla = in_xla_context()  # TensorFlow's own kernels round every product; XLA's fuse them
    samples = tf.range(unroll)[:, None, None]  # (U, 1, 1): the samples of one loop step

    def pass_over(ks):
        """Output rows ``(len(ks), ph, pw, c_out)`` of RoIs ``ks``."""
        n = tf.shape(ks)[0]
        by, bx = tf.gather(base_h, ks), tf.gather(base_w, ks)  # (n, ph), (n, pw)
        sy, sx = tf.gather(bin_h, ks)[:, None], tf.gather(bin_w, ks)[:, None]
        gy, gx = tf.gather(grid_h, ks)[:, None], tf.gather(grid_w, ks)[:, None]
        steps = tf.gather(walked, ks)[:, None, None]
        row0 = tf.gather(image, ks)[:, None, None] * height
        # All bits set, from data: image indices are >= 0, which the compilers cannot know. A
        # constant mask would not do: a fixed grid's loop runs once, XLA removes it, and LLVM
        # turns the AND with a select of constants back into a select it can fuse through.
        live = -1 - tf.bitwise.right_shift(tf.gather(image, ks), 31)[:, None, None]

        def taps(t0):
            """Samples t0 .. t0 + U - 1 of every bin: flat feature rows and weights
            ``(U, 4, n, ph, pw)``, and a mask ``(U, n, ph, pw)``: all bits set, or none for a
            sample outside the map or past the bin's grid."""
            t = t0 + samples
            iy = t // tf.maximum(gx, 1)
            y0, y1, hy, ly, in_y = _axis_taps(by, sy, gy, iy, height)  # (U, n, ph)
            x0, x1, hx, lx, in_x = _axis_taps(bx, sx, gx, t - iy * gx, width)  # (U, n, pw)
            rows = [(row0 + y[..., None]) * width + x[..., None, :] for y in (y0, y1) for x in (x0, x1)]
            if grouped_channels:
                rows = [r * bins_per_roi + cell_group for r in rows]
            # plain products: each goes on into a multiply, never an add, so XLA fuses none
            weights = [wy[..., None] * wx[..., None, :] for wy in (hy, ly) for wx in (hx, lx)]
            valid = in_y[..., None] & in_x[..., None, :] & (t[..., None] < steps)
            rows = tf.where(valid[:, None], tf.stack(rows, 1), 0)  # a grid of 0 samples gives NaN positions
            return rows, tf.stack(weights, 1), tf.where(valid, live, 0)

        def step(t, acc, rows, weights, mask):
            for u in range(unroll):
                products = [weights[u, i][..., None] * tf.gather(flat, rows[u, i]) for i in range(4)]
                if xla:  # no FMA: the mask, loop data XLA cannot see through, follows each product
                    products = [_masked(p, mask[u]) for p in products]
                sample = ((products[0] + products[1]) + products[2]) + products[3]
                # Masked again: a skipped sample adds +0 (even where its taps hold inf), and
                # Grappler cannot merge this add with the sample's into one AddN of another order.
                acc = acc + _masked(sample, mask[u])
            return (t + unroll, acc) + taps(t + unroll)

        limit = tf.reduce_max(tf.gather(walked, ks)) if group is None else tf.gather(walked, ks[0])
        zero = tf.zeros(tf.stack([n, ph, pw, c_out]))
        _, acc, _, _, _ = tf.while_loop(lambda t, *_: t < limit, step, (tf.constant(0), zero) + taps(tf.constant(0)))
        divisor = tf.cast(tf.maximum(tf.gather(count, ks), 1), tf.float64)[:, None, None, None]
        return tf.cast(tf.cast(acc, tf.float64) / divisor, tf.float32)  # float64: no reciprocal

    if group is None:
        return pass_over(tf.range(k))
    order = tf.argsort(walked, direction="DESCENDING", stable=True)
    n_groups = (k + group - 1) // group
    # The last group is filled up with its last RoI again.
    slots = tf.gather(order, tf.minimum(tf.range(n_groups * group), k - 1))

    def one_group(i, out):
        ks = tf.slice(slots, [i * group], [group])
        return i + 1, tf.tensor_scatter_nd_update(out, ks[:, None], pass_over(ks))

    out = tf.zeros(tf.stack([k, ph, pw, c_out]))
    _, out = tf.while_loop(lambda i, _: i < n_groups, one_group, (tf.constant(0), out))
    return out[:-1] if spare else out


walk_xla = tf.function(walk_impl, jit_compile=True, reduce_retracing=False)
