"""Direct CPU loops for the forward passes of RoIPool, RoIAlign and their position-sensitive
forms, compiled by Numba.

TensorFlow has no op that reduces a ragged window per output, so the graph kernels gather
(RoIPool: sparse-table lookups; RoIAlign: a windowed contraction) and write intermediates.
These loops read each bin's cells or samples straight into the output row, with the channels
innermost (contiguous, vectorized), as torchvision's CPU kernels do per channel.

RoIAlign sums each sample's four taps and then adds the sample, in torchvision's order, with
no fused multiply-add (Numba's default), and PS RoIPool sums cells row by row: their results
equal torchvision's bit for bit. RoIPool keeps the first strict maximum, so NaN is skipped and
an all -inf bin stays at -FLT_MAX.

Bin edges and sample grids come in from the graph code (``pool_bins``/``align_geometry``), so
there is one geometry for every path. Only imported where Numba is installed.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

_LOWEST = np.float32(-np.finfo(np.float32).max)


@njit(parallel=True, cache=True, boundscheck=False)
def pool_forward(feats, b, hs, he, ws, we, out):  # pragma: no cover - compiled
    """``out[k, p, q]`` = max of ``feats[b[k], hs:he, ws:we]`` per channel; 0 for an empty bin.

    Each step writes the running maximum to another buffer than the one it reads (the last
    step to the output): written in place, the compare-and-keep becomes a masked store, which
    is several times slower on AMD CPUs than the plain max and store this gives."""
    ph, pw = hs.shape[1], ws.shape[1]
    channels = feats.shape[3]
    for k in prange(b.shape[0]):
        image = b[k]
        scratch = np.empty((2, channels), np.float32)
        for p in range(ph):
            for q in range(pw):
                row = out[k, p, q]
                cols = we[k, q] - ws[k, q]
                n = (he[k, p] - hs[k, p]) * cols
                if he[k, p] <= hs[k, p] or cols <= 0:
                    row[:] = np.float32(0)
                    continue
                for i in range(n):
                    cell = feats[image, hs[k, p] + i // cols, ws[k, q] + i % cols]
                    dst = row if i == n - 1 else scratch[i & 1]
                    if i == 0:
                        for c in range(channels):
                            v = cell[c]
                            dst[c] = v if v > _LOWEST else _LOWEST
                    else:
                        src = scratch[(i - 1) & 1]
                        for c in range(channels):
                            v, best = cell[c], src[c]
                            dst[c] = v if v > best else best  # strict: NaN never wins
    return out


@njit(cache=True)
def _taps(pos, length):  # pragma: no cover - compiled
    """torchvision's bilinear rule on one axis: (low, high, weight of low, weight of high)."""
    pos = max(pos, np.float32(0))
    low = int(pos)
    if low >= length - 1:
        low = length - 1
        return low, low, np.float32(1), np.float32(0)
    frac = pos - np.float32(low)
    return low, low + 1, np.float32(1) - frac, frac


@njit(parallel=True, cache=True, boundscheck=False)
def ps_pool_forward(feats, b, hs, he, ws, we, out):  # pragma: no cover - compiled
    """torchvision's PS RoIPool forward on ``feats (B, H, W, ph * pw, C_out)``: bin ``(p, q)``
    averages its cells in channel group ``p * pw + q``, summed row by row in float32."""
    ph, pw = hs.shape[1], ws.shape[1]
    channels = feats.shape[4]
    for k in prange(b.shape[0]):
        image = b[k]
        for p in range(ph):
            for q in range(pw):
                row = out[k, p, q]
                row[:] = np.float32(0)
                area = (he[k, p] - hs[k, p]) * (we[k, q] - ws[k, q])
                if he[k, p] <= hs[k, p] or we[k, q] <= ws[k, q]:
                    continue
                for h in range(hs[k, p], he[k, p]):
                    for w in range(ws[k, q], we[k, q]):
                        cell = feats[image, h, w, p * pw + q]
                        for c in range(channels):
                            row[c] += cell[c]
                for c in range(channels):
                    row[c] = row[c] / np.float32(area)
    return out


@njit(parallel=True, cache=True, boundscheck=False)
def align_forward(feats, b, start_h, start_w, bin_h, bin_w, grid_h, grid_w, out):  # pragma: no cover - compiled
    """torchvision's RoIAlign forward on ``feats (B, H, W, G, C)``: the mean of each bin's
    ``grid_h x grid_w`` bilinear samples at ``start + p * bin + ((i + .5) * bin) / grid``;
    samples outside ``[-1, H] x [-1, W]`` add 0 and still count. Bin ``(p, q)`` reads channel
    group ``p * pw + q`` when there are ``ph * pw`` groups (PS RoIAlign), else group 0."""
    ph, pw = out.shape[1], out.shape[2]
    height, width, channels = feats.shape[1], feats.shape[2], feats.shape[4]
    grouped = feats.shape[3] > 1
    half, edge = np.float32(0.5), np.float32(-1)
    for k in prange(b.shape[0]):
        plane, gh, gw = feats[b[k]], grid_h[k], grid_w[k]
        count = np.float32(max(gh * gw, 1))
        for p in range(ph):
            base_y = start_h[k] + np.float32(np.float32(p) * bin_h[k])
            for q in range(pw):
                base_x = start_w[k] + np.float32(np.float32(q) * bin_w[k])
                g = p * pw + q if grouped else 0
                row = out[k, p, q]
                row[:] = np.float32(0)
                for iy in range(gh):
                    y = base_y + np.float32(np.float32(iy) + half) * bin_h[k] / np.float32(gh)
                    if y < edge or y > np.float32(height):
                        continue
                    y0, y1, hy, ly = _taps(y, height)
                    for ix in range(gw):
                        x = base_x + np.float32(np.float32(ix) + half) * bin_w[k] / np.float32(gw)
                        if x < edge or x > np.float32(width):
                            continue
                        x0, x1, hx, lx = _taps(x, width)
                        w1, w2, w3, w4 = hy * hx, hy * lx, ly * hx, ly * lx
                        v1, v2, v3, v4 = plane[y0, x0, g], plane[y0, x1, g], plane[y1, x0, g], plane[y1, x1, g]
                        for c in range(channels):
                            row[c] += w1 * v1[c] + w2 * v2[c] + w3 * v3[c] + w4 * v4[c]
                for c in range(channels):
                    row[c] = row[c] / count
    return out
