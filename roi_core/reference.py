"""Slow, obviously-correct NumPy versions of the operators, written from torchvision's CPU
kernels line by line. Used only by tests and benchmarks.

All arithmetic is float32, in the same order as the C++ kernels, so results match to float32
rounding. Features are ``(B, H, W, C)`` (channels last); boxes ``(K, 5)``.
"""
from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def _round_half_away(v: np.float32) -> int:
    return int(math.copysign(math.floor(abs(float(v)) + 0.5), float(v)))


def roi_pool_ref(features, boxes, output_size, spatial_scale=1.0, return_argmax=False):
    """Fast R-CNN RoIPool. With ``return_argmax`` also returns ``(K, ph, pw, C)`` flat indices
    ``h * W + w`` of the first maximum of each bin (-1 for an empty bin)."""
    feats = np.asarray(features, dtype=F32)
    boxes = np.asarray(boxes, dtype=F32).reshape(-1, 5)
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, height, width, channels = feats.shape
    out = np.zeros((boxes.shape[0], ph, pw, channels), dtype=F32)
    arg = np.full(out.shape, -1, dtype=np.int64)
    scale = F32(spatial_scale)
    for k, (bi, x1, y1, x2, y2) in enumerate(boxes):
        b = int(bi)
        start_w = _round_half_away(F32(x1) * scale)
        start_h = _round_half_away(F32(y1) * scale)
        end_w = _round_half_away(F32(x2) * scale)
        end_h = _round_half_away(F32(y2) * scale)
        roi_w = max(end_w - start_w + 1, 1)
        roi_h = max(end_h - start_h + 1, 1)
        bin_h = F32(roi_h) / F32(ph)
        bin_w = F32(roi_w) / F32(pw)
        for p in range(ph):
            for q in range(pw):
                hs = int(math.floor(F32(p) * bin_h))
                ws = int(math.floor(F32(q) * bin_w))
                he = int(math.ceil(F32(p + 1) * bin_h))
                we = int(math.ceil(F32(q + 1) * bin_w))
                hs = min(max(hs + start_h, 0), height)
                he = min(max(he + start_h, 0), height)
                ws = min(max(ws + start_w, 0), width)
                we = min(max(we + start_w, 0), width)
                empty = he <= hs or we <= ws
                for c in range(channels):
                    best = F32(0) if empty else F32(-np.finfo(F32).max)
                    best_idx = -1
                    for h in range(hs, he):
                        for w in range(ws, we):
                            v = feats[b, h, w, c]
                            if v > best:
                                best, best_idx = v, h * width + w
                    out[k, p, q, c] = best
                    arg[k, p, q, c] = best_idx
    return (out, arg) if return_argmax else out


def _bilinear_taps(y, x, height, width):
    """torchvision's pre_calc for one sample: four (h, w, weight) taps, or [] when outside."""
    if not (-1.0 <= y <= height and -1.0 <= x <= width):
        return []
    y = F32(max(y, F32(0)))
    x = F32(max(x, F32(0)))
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = F32(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = F32(x_low)
    else:
        x_high = x_low + 1
    ly, lx = F32(y - y_low), F32(x - x_low)
    hy, hx = F32(1) - ly, F32(1) - lx
    return [(y_low, x_low, hy * hx), (y_low, x_high, hy * lx), (y_high, x_low, ly * hx), (y_high, x_high, ly * lx)]


def roi_align_ref(features, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    feats = np.asarray(features, dtype=F32)
    boxes = np.asarray(boxes, dtype=F32).reshape(-1, 5)
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, height, width, channels = feats.shape
    out = np.zeros((boxes.shape[0], ph, pw, channels), dtype=F32)
    scale = F32(spatial_scale)
    offset = F32(0.5) if aligned else F32(0)
    for k, (bi, x1, y1, x2, y2) in enumerate(boxes):
        b = int(bi)
        start_w = F32(x1) * scale - offset
        start_h = F32(y1) * scale - offset
        end_w = F32(x2) * scale - offset
        end_h = F32(y2) * scale - offset
        roi_w = F32(end_w - start_w)
        roi_h = F32(end_h - start_h)
        if not aligned:
            roi_w = max(roi_w, F32(1))
            roi_h = max(roi_h, F32(1))
        bin_h = F32(roi_h / F32(ph))
        bin_w = F32(roi_w / F32(pw))
        grid_h = sampling_ratio if sampling_ratio > 0 else int(math.ceil(bin_h))
        grid_w = sampling_ratio if sampling_ratio > 0 else int(math.ceil(bin_w))
        count = max(grid_h * grid_w, 1)
        for p in range(ph):
            for q in range(pw):
                acc = np.zeros(channels, dtype=F32)
                for iy in range(grid_h):
                    y = F32(start_h + F32(p) * bin_h) + F32(F32(F32(iy) + F32(0.5)) * bin_h) / F32(grid_h)
                    for ix in range(grid_w):
                        x = F32(start_w + F32(q) * bin_w) + F32(F32(F32(ix) + F32(0.5)) * bin_w) / F32(grid_w)
                        for h, w, wt in _bilinear_taps(F32(y), F32(x), height, width):
                            acc += wt * feats[b, h, w]
                out[k, p, q] = acc / F32(count)
    return out
