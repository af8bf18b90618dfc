"""Slow, obviously-correct NumPy versions of the operators, written from torchvision's CPU
kernels line by line. Used only by tests and benchmarks. Bin edges and sample positions come
from geometry.py, which the overlay draws too.

All arithmetic is float32, in the same order as the C++ kernels, so results match to float32
rounding. Features are ``(B, H, W, C)`` (channels last); boxes ``(K, 5)``.
"""
from __future__ import annotations

import numpy as np

from .geometry import F32, align_sample_grid, pool_bin_edges


def _inputs(features, boxes, output_size):
    """float32 features and ``(K, 5)`` boxes, and ``(ph, pw)``."""
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    return np.asarray(features, dtype=F32), np.asarray(boxes, dtype=F32).reshape(-1, 5), ph, pw


def roi_pool_ref(features, boxes, output_size, spatial_scale=1.0, return_argmax=False):
    """Fast R-CNN RoIPool. With ``return_argmax`` also returns ``(K, ph, pw, C)`` flat indices
    ``h * W + w`` of the first maximum of each bin (-1 for an empty bin)."""
    feats, boxes, ph, pw = _inputs(features, boxes, output_size)
    _, height, width, channels = feats.shape
    out = np.zeros((boxes.shape[0], ph, pw, channels), dtype=F32)
    arg = np.full(out.shape, -1, dtype=np.int64)
    for k, box in enumerate(boxes):
        b = int(box[0])
        rows, cols = pool_bin_edges(box[1:], spatial_scale, ph, pw, height, width)
        for p, (hs, he) in enumerate(rows):
            for q, (ws, we) in enumerate(cols):
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


def _bilinear(image, y, x, height, width, channels=slice(None)):
    """One sample's value: torchvision's ``w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4``, summed left
    to right before it is added to the bin; None when the sample is outside the map."""
    taps = _bilinear_taps(F32(y), F32(x), height, width)
    if not taps:
        return None
    (h1, w1, a), (h2, w2, b), (h3, w3, c), (h4, w4, d) = taps
    return a * image[h1, w1, channels] + b * image[h2, w2, channels] + c * image[h3, w3, channels] + d * image[h4, w4, channels]


def roi_align_ref(features, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    feats, boxes, ph, pw = _inputs(features, boxes, output_size)
    _, height, width, channels = feats.shape
    out = np.zeros((boxes.shape[0], ph, pw, channels), dtype=F32)
    for k, box in enumerate(boxes):
        b = int(box[0])
        ys, xs, count = align_sample_grid(box[1:], spatial_scale, ph, pw, sampling_ratio, aligned)
        for p in range(ph):
            for q in range(pw):
                acc = np.zeros(channels, dtype=F32)
                for y in ys[p]:
                    for x in xs[q]:
                        value = _bilinear(feats[b], y, x, height, width)
                        if value is not None:
                            acc += value
                out[k, p, q] = acc / F32(count)
    return out


def _ps_channels(c_out: int, p: int, q: int, ph: int, pw: int):
    """torchvision's NCHW channel of output channel ``c_out`` at bin (p, q)."""
    return [(c * ph + p) * pw + q for c in range(c_out)]


def ps_roi_pool_ref(features, boxes, output_size, spatial_scale=1.0):
    """Position-sensitive RoI average pooling (R-FCN), torchvision's CPU forward."""
    feats, boxes, ph, pw = _inputs(features, boxes, output_size)
    _, height, width, channels = feats.shape
    c_out = channels // (ph * pw)
    out = np.zeros((boxes.shape[0], ph, pw, c_out), dtype=F32)
    for k, box in enumerate(boxes):
        b = int(box[0])
        rows, cols = pool_bin_edges(box[1:], spatial_scale, ph, pw, height, width, position_sensitive=True)
        for p, (hs, he) in enumerate(rows):
            for q, (ws, we) in enumerate(cols):
                if he <= hs or we <= ws:
                    continue
                chans = _ps_channels(c_out, p, q, ph, pw)
                acc = np.zeros(c_out, dtype=F32)
                for h in range(hs, he):
                    for w in range(ws, we):
                        acc += feats[b, h, w, chans]
                out[k, p, q] = acc / F32((he - hs) * (we - ws))
    return out


def ps_roi_align_ref(features, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1):
    """Position-sensitive RoIAlign, torchvision's CPU forward (always half-pixel aligned, no
    minimum RoI size). Where torchvision divides 0 samples by 0 (NaN), this gives 0."""
    feats, boxes, ph, pw = _inputs(features, boxes, output_size)
    _, height, width, channels = feats.shape
    c_out = channels // (ph * pw)
    out = np.zeros((boxes.shape[0], ph, pw, c_out), dtype=F32)
    for k, box in enumerate(boxes):
        b = int(box[0])
        ys, xs, count = align_sample_grid(box[1:], spatial_scale, ph, pw, sampling_ratio, aligned=True)
        for p in range(ph):
            for q in range(pw):
                chans = _ps_channels(c_out, p, q, ph, pw)
                acc = np.zeros(c_out, dtype=F32)
                for y in ys[p]:
                    for x in xs[q]:
                        value = _bilinear(feats[b], y, x, height, width, chans)
                        if value is not None:
                            acc += value
                out[k, p, q] = acc / F32(count)
    return out


def infer_scale_ref(map_height: int, image_height: int) -> float:
    """torchvision's _infer_scale: the power of two nearest (in log2, float32, half to even)."""
    return float(2.0 ** float(np.round(np.log2(F32(float(map_height) / float(image_height))))))


def level_mapper_ref(boxes_xyxy, k_min, k_max, canonical_scale=224, canonical_level=4, eps=1e-6):
    """torchvision's LevelMapper in float32: level index per box, -1 where the area is NaN
    (negative: a box inverted along one axis), which torchvision pools into no level."""
    bx = np.asarray(boxes_xyxy, dtype=F32).reshape(-1, 4)
    area = (bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.sqrt(area)
        lvl = np.floor(F32(canonical_level) + np.log2(s / F32(canonical_scale)) + F32(eps))
    lvl = np.clip(lvl, k_min, k_max)
    return np.where(np.isnan(lvl), -1, np.nan_to_num(lvl) - k_min).astype(np.int64)


def multi_scale_roi_align_ref(features, boxes, output_size, image_size, sampling_ratio=2, canonical_scale=224, canonical_level=4):
    """torchvision's MultiScaleRoIAlign (FPN) on one batch: ``features`` finest first."""
    boxes = np.asarray(boxes, dtype=F32).reshape(-1, 5)
    scales = [infer_scale_ref(f.shape[1], image_size[0]) for f in features]
    if len(features) == 1:
        return roi_align_ref(features[0], boxes, output_size, scales[0], sampling_ratio, False)
    k_min, k_max = int(-np.log2(F32(scales[0]))), int(-np.log2(F32(scales[-1])))
    levels = level_mapper_ref(boxes[:, 1:], k_min, k_max, canonical_scale, canonical_level)
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    out = np.zeros((boxes.shape[0], ph, pw, features[0].shape[3]), dtype=F32)
    for level, (feats, scale) in enumerate(zip(features, scales)):
        idx = np.nonzero(levels == level)[0]
        if idx.size:
            out[idx] = roi_align_ref(feats, boxes[idx], output_size, scale, sampling_ratio, False)
    return out
