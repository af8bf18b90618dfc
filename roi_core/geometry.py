"""Where the operators' bins and samples fall on the feature grid, in plain float32 NumPy.

One bin geometry, written from torchvision's CPU kernels in their float32 order: the NumPy
reference (reference.py) pools over these bins and samples at these points, and the overlay
draws them (``roi_pool_cells``, ``roi_align_samples``), so what the overlay shows is what the
operators compute.
"""
from __future__ import annotations

import math

import numpy as np

from .boxes import normalize_output_size

F32 = np.float32


# RoIPool's rounded coordinates are clamped to +-2**60 cells (as roi_pool does): beyond
# torchvision's int32 the C++ conversion is undefined; the clamp keeps the box covering the map.
COORD_LIMIT = float(2**60)


def round_half_away(v) -> int:
    """C's ``round`` of a float32 coordinate, as an exact integer within +-COORD_LIMIT."""
    v = min(max(float(v), -COORD_LIMIT), COORD_LIMIT)
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def pool_bin_edges(box_xyxy, spatial_scale, ph: int, pw: int, height: int, width: int, *, position_sensitive=False):
    """RoIPool's clipped half-open bin edges ``([(hs, he)] * ph, [(ws, we)] * pw)`` of one box
    ``(x1, y1, x2, y2)`` in input pixels: coordinates scaled and rounded half away from zero,
    the end inclusive (+1), ``floor``/``ceil`` bin edges in float32, clipped to the map.

    ``position_sensitive``: torchvision's PSRoIPool instead: no +1 on the end, and edges
    clipped to ``H - 1`` / ``W - 1`` (so the last row and column never count)."""
    scale = F32(spatial_scale)
    start_w, start_h, end_w, end_h = (round_half_away(F32(v) * scale) for v in box_xyxy)
    inclusive = 0 if position_sensitive else 1
    roi_w = max(end_w - start_w + inclusive, 1)
    roi_h = max(end_h - start_h + inclusive, 1)
    bin_h = F32(roi_h) / F32(ph)
    bin_w = F32(roi_w) / F32(pw)
    last = 1 if position_sensitive else 0

    def edges(n, bin_size, start, limit):
        out = []
        for p in range(n):
            lo = int(math.floor(F32(p) * bin_size)) + start
            hi = int(math.ceil(F32(p + 1) * bin_size)) + start
            out.append((min(max(lo, 0), limit - last), min(max(hi, 0), limit - last)))
        return out

    return edges(ph, bin_h, start_h, height), edges(pw, bin_w, start_w, width)


def align_sample_grid(box_xyxy, spatial_scale, ph: int, pw: int, sampling_ratio=-1, aligned=False):
    """RoIAlign's sample positions of one box, in feature cells, as torchvision computes them
    in float32: ``ys (ph, gh)``, ``xs (pw, gw)`` (the samples of bin (p, q) are the Cartesian
    product of ``ys[p]`` and ``xs[q]``) and the divisor ``count = max(gh * gw, 1)``."""
    scale = F32(spatial_scale)
    offset = F32(0.5) if aligned else F32(0)
    start_w, start_h, end_w, end_h = (F32(F32(v) * scale) - offset for v in box_xyxy)
    roi_w, roi_h = F32(end_w - start_w), F32(end_h - start_h)
    if not aligned:
        roi_w, roi_h = max(roi_w, F32(1)), max(roi_h, F32(1))
    bin_h, bin_w = F32(roi_h / F32(ph)), F32(roi_w / F32(pw))
    grid_h = sampling_ratio if sampling_ratio > 0 else int(math.ceil(bin_h))
    grid_w = sampling_ratio if sampling_ratio > 0 else int(math.ceil(bin_w))
    grid_h, grid_w = max(grid_h, 0), max(grid_w, 0)

    def positions(n, start, bin_size, grid):
        # start + p * bin rounds the product, then the sum; never fused (torchvision's order)
        return np.array(
            [[F32(start + F32(F32(p) * bin_size)) + F32(F32(F32(i) + F32(0.5)) * bin_size) / F32(grid) for i in range(grid)] for p in range(n)],
            dtype=F32,
        ).reshape(n, grid)

    ys, xs = positions(ph, start_h, bin_h, grid_h), positions(pw, start_w, bin_w, grid_w)
    return ys, xs, max(grid_h * grid_w, 1)


def roi_pool_cells(box_px, spatial_scale: float, output_size, feature_hw) -> dict:
    """Where RoIPool's bins fall on the feature grid for one pixel box (for display).

    Returns integer cell edges ``rows (ph, 2)`` and ``cols (pw, 2)`` as half-open
    ``[start, end)`` feature-cell ranges after clipping, exactly as ``roi_pool`` uses them.
    """
    ph, pw = normalize_output_size(output_size)
    h, w = feature_hw
    rows, cols = pool_bin_edges(box_px, spatial_scale, ph, pw, h, w)
    return {"rows": np.array(rows), "cols": np.array(cols)}


def roi_align_samples(box_px, spatial_scale: float, output_size, sampling_ratio=-1, aligned=False):
    """Sample-point coordinates (feature grid) RoIAlign uses for one pixel box (for display).

    Returns ``ys (ph, gh)`` and ``xs (pw, gw)``; the samples are their Cartesian product per bin.
    """
    ph, pw = normalize_output_size(output_size)
    ys, xs, _ = align_sample_grid(box_px, spatial_scale, ph, pw, sampling_ratio, aligned)
    return {"ys": ys, "xs": xs}
