"""Point colours for the map, as categories: a code per point, a colour per code, a legend with
counts. Continuous values (box size, suspect score) are binned so the panel needs one brush per
bin, whatever the number of points."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Categorical colours readable on a dark background (Tableau 20 order, strong shades first).
PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120), (152, 223, 138),
    (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (219, 219, 141), (158, 218, 229),
    (127, 127, 127), (199, 199, 199)], np.uint8)
# Viridis at 8 evenly spaced stops: low = dark purple, high = yellow.
GRADIENT = np.array([(68, 1, 84), (70, 50, 127), (54, 92, 141), (39, 127, 142), (31, 161, 135),
                     (74, 194, 109), (159, 218, 58), (253, 231, 37)], np.uint8)
MODES = ("label", "image", "box size", "suspect score")
LEGEND_MAX = 12


@dataclass
class Coloring:
    codes: np.ndarray  # (N,) int: index into colours
    colours: np.ndarray  # (M, 3) uint8
    legend: list  # (name, (r, g, b), count), most common first for categories


def categorical(values) -> Coloring:
    values = np.asarray(values, dtype=object).astype(str)
    names, codes, counts = np.unique(values, return_inverse=True, return_counts=True) if len(values) else (np.array([]), np.zeros(0, int), np.array([]))
    colours = PALETTE[np.arange(len(names)) % len(PALETTE)]
    order = np.lexsort((names, -counts))
    legend = [(str(names[i]), tuple(int(c) for c in colours[i]), int(counts[i])) for i in order]
    if len(legend) > LEGEND_MAX:
        rest = sum(c for _, _, c in legend[LEGEND_MAX - 1:])
        legend = legend[:LEGEND_MAX - 1] + [(f"{len(legend) - LEGEND_MAX + 1} more", (128, 128, 128), rest)]
    return Coloring(codes.astype(np.int64), colours, legend)


def binned(values, edges, unit="") -> Coloring:
    """``values`` into ``len(edges) - 1`` bins coloured from the gradient."""
    bins = len(edges) - 1
    codes = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    stops = np.linspace(0, len(GRADIENT) - 1, bins).round().astype(int)
    colours = GRADIENT[stops]
    counts = np.bincount(codes, minlength=bins)
    legend = [(f"{edges[i]:.3g}-{edges[i + 1]:.3g}{unit}", tuple(int(c) for c in colours[i]), int(counts[i]))
              for i in range(bins)]
    return Coloring(codes.astype(np.int64), colours, legend)


def color_by(mode, table, suspects=None) -> Coloring:
    if mode == "label":
        return categorical(table.labels)
    if mode == "image":
        return categorical([str(p).replace("\\", "/").rsplit("/", 1)[-1] for p in table.images])
    if mode == "box size":
        side = np.sqrt(np.clip((table.corners[:, 2] - table.corners[:, 0]) * (table.corners[:, 3] - table.corners[:, 1]), 0, None))
        lo, hi = (float(side.min()), float(side.max())) if len(side) else (0.0, 1.0)
        edges = np.geomspace(max(lo, 1.0), max(hi, lo + 1, 2.0), 7)
        edges[0], edges[-1] = min(lo, edges[0]), max(hi, edges[-1])
        return binned(side, edges, " px")
    if mode == "suspect score":
        if suspects is None:
            raise ValueError("suspect scores are not computed yet")
        return binned(suspects.score, np.linspace(0, 1, 6))
    raise ValueError(f"colour mode must be one of {MODES}, got {mode!r}")
