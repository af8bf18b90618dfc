"""What the window shows for the current image, Qt-free: the settings, the boxes and which one
is selected, the feature maps, the pooled grids, live drag updates, the channel, and the
overlay geometry. The GUI binds widgets to this model and forwards user input to it; every
decision about what to pool and what to show is made here, so it is tested without Qt.

Events (``inspection.events.connect(name, callback)``), each emitted after the state changed:
``settings`` (changed: set of field names), ``features``, ``pooled`` (live: bool),
``selection``, ``channel``, ``boxes``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields, replace

import numpy as np

from app.events import EventEmitter
from app.mosaic import Mosaic, normalize, tile
from app.pooling import MULTI_SCALE, OPS, PoolSettings, pool_boxes
from app.pyramid import PYRAMID, Pyramid
from roi_core.geometry import roi_align_samples, roi_pool_cells

OP_LABELS = {"roi_pool": "RoIPool", "roi_align": "RoIAlign", MULTI_SCALE: "Multi-scale RoIAlign"}
OP_CHOICES = {"RoIAlign": ("roi_align",), "RoIPool": ("roi_pool",), "Both side by side": ("roi_pool", "roi_align"),
              "Multi-scale RoIAlign": (MULTI_SCALE,)}  # offered with the pyramid layer only
MOSAIC_TILE = 48  # channel tiles are shown at most this many pixels wide
NORMALIZATIONS = ("per-channel", "global")
COLORMAPS = ("viridis", "inferno", "magma", "plasma", "CET-L1")
# Changing these re-pools; changing the extractor or layer needs new feature maps first.
_POOLING_FIELDS = {"ops", "output_size", "sampling_ratio"}


@dataclass(frozen=True)
class Settings:
    extractor: str = "filters"
    layer: str = ""  # "" until the extractor's layers are known
    ops: tuple = ("roi_align",)
    output_size: int = 7
    sampling_ratio: int = -1
    normalization: str = "per-channel"
    colormap: str = "viridis"

    def pool_settings(self, op: str) -> PoolSettings:
        return PoolSettings(op=op, output_size=(self.output_size, self.output_size), sampling_ratio=self.sampling_ratio)

    @property
    def op_choice(self) -> str:
        return next(name for name, ops in OP_CHOICES.items() if ops == self.ops)


class Inspection:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.events = EventEmitter()
        self.features = None  # roi_core Features shown (stride in image pixels): the finest level of a pyramid
        self.pyramid = None  # app.pyramid.Pyramid when the layer is the multi-scale pyramid
        self.boxes = []  # the current image's boxes, in document order
        self.selected = -1  # box id, -1 for none
        self.channel = 0
        self.pooled = {}  # op -> (K, ph, pw, C), rows in box order; NaN rows for unpoolable boxes
        self.live = {}  # box id -> corners while a box is being dragged
        self._levels = {}  # box id -> pyramid level, for multi-scale RoIAlign
        self.last_update_ms = 0.0

    # ------------------------------------------------------------------ inputs
    def update_settings(self, **changes) -> set:
        """Apply ``changes``; re-pool when they affect pooling. Returns the changed field names."""
        names = {f.name for f in fields(Settings)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        if "ops" in changes:
            changes["ops"] = tuple(changes["ops"])
            if not changes["ops"] or set(changes["ops"]) - set(OPS):
                raise ValueError(f"ops must be a non-empty subset of {OPS}, got {changes['ops']!r}")
        layer = changes.get("layer", self.settings.layer)
        if layer != PYRAMID and MULTI_SCALE in changes.get("ops", self.settings.ops):
            changes["ops"] = ("roi_align",)  # multi-scale needs the pyramid: back to plain RoIAlign
        changed = {k for k, v in changes.items() if getattr(self.settings, k) != v}
        if not changed:
            return changed
        self.settings = replace(self.settings, **changes)
        self.events.emit("settings", changed=changed)
        if changed & _POOLING_FIELDS:
            self.refresh()
        return changed

    def set_boxes(self, boxes) -> None:
        """The current image's boxes changed (image switch, an edit, undo/redo)."""
        self.boxes = list(boxes)
        ids = {b.id for b in self.boxes}
        self.live = {k: v for k, v in self.live.items() if k in ids}
        self.events.emit("boxes")
        if self.selected not in ids:
            self.select(-1)
        self.refresh()

    def set_features(self, features) -> None:
        """One map's ``Features``, a ``Pyramid``, or None."""
        self.pyramid = features if isinstance(features, Pyramid) else None
        features = features.finest if self.pyramid is not None else features
        self.features = features
        if features is not None:
            self.channel = min(self.channel, features.features.shape[-1] - 1)
        self.events.emit("features")
        self.refresh()

    def clear(self) -> None:
        """No image (or it failed to load): nothing of the previous image stays on show."""
        self.live = {}
        with self.events.blocked("pooled"):
            self.set_boxes([])
            self.set_features(None)
        self.pooled = {}
        self.events.emit("pooled", live=False)

    def select(self, box_id: int) -> None:
        box_id = box_id if any(b.id == box_id for b in self.boxes) else -1
        if box_id != self.selected:
            self.selected = box_id
            self.events.emit("selection")

    def set_channel(self, channel: int) -> None:
        if self.features is None:
            return
        channel = int(np.clip(channel, 0, self.maps.shape[-1] - 1))
        if channel != self.channel:
            self.channel = channel
            self.events.emit("channel")

    def drag(self, box_id: int, corners) -> None:
        """A box is being dragged: remember its corners; ``apply_live`` re-pools it."""
        self.live[box_id] = tuple(corners)

    def end_drag(self, box_id: int) -> None:
        self.live.pop(box_id, None)

    # ------------------------------------------------------------------ pooling
    @property
    def maps(self):
        """The current feature maps, ``(h, w, C)``, or None."""
        return None if self.features is None else self.features.features[0]

    @property
    def ops(self) -> tuple:
        return self.settings.ops

    @property
    def source(self):
        """What pooling reads: the pyramid when there is one, else the single map."""
        return self.pyramid if self.pyramid is not None else self.features

    def op_choices(self) -> list[str]:
        """The op menu: multi-scale RoIAlign only with the pyramid layer."""
        return [name for name, ops in OP_CHOICES.items() if MULTI_SCALE not in ops or self.settings.layer == PYRAMID]

    def levels(self) -> dict:
        """box id -> pyramid level it pools from, when multi-scale RoIAlign is on show (worked
        out once per pooling, not once per box shown)."""
        return self._levels

    def _find_levels(self) -> dict:
        if self.pyramid is None or MULTI_SCALE not in self.ops:
            return {}
        good = [b for b in self.boxes if b.problem() is None]
        if not good:
            return {}
        found = self.pyramid.levels_of([self.corners(b) for b in good])
        return {b.id: int(level) for b, level in zip(good, found)}

    def level_text(self, box) -> str:
        level = self.levels().get(box.id) if box is not None else None
        if level is None:
            return ""
        if level < 0:
            return "no level (inverted box)"
        return f"level {level} (stride {self.pyramid.levels[level].stride:.3g})"

    def selected_index(self) -> int | None:
        for i, b in enumerate(self.boxes):
            if b.id == self.selected:
                return i
        return None

    def selected_box(self):
        i = self.selected_index()
        return None if i is None else self.boxes[i]

    def corners(self, box) -> tuple:
        return self.live.get(box.id, box.corners())

    def problems(self) -> dict:
        """box id -> why it cannot be pooled (shown in the region table)."""
        return {b.id: p for b in self.boxes if (p := b.problem())}

    def refresh(self) -> None:
        """Pool every box of the current image, one batched call per op."""
        started = time.perf_counter()
        self.pooled = {}
        if self.features is not None and self.boxes:
            good = [i for i, b in enumerate(self.boxes) if b.problem() is None]
            corners = np.array([self.corners(self.boxes[i]) for i in good], np.float32).reshape(-1, 4)
            for op in self.ops:
                fresh = pool_boxes(self.source, corners, self.settings.pool_settings(op))
                out = np.full((len(self.boxes),) + fresh.shape[1:], np.nan, np.float32)
                out[good] = fresh
                self.pooled[op] = out
        self._done(started, live=False)

    def apply_live(self) -> bool:
        """Re-pool only the boxes being dragged (the latest geometry wins). False: nothing to do."""
        if not self.live or self.features is None or not self.pooled:
            return False
        started = time.perf_counter()
        index = {b.id: i for i, b in enumerate(self.boxes) if b.problem() is None}
        ids = [bid for bid in self.live if bid in index]
        if not ids:
            return False
        corners = np.array([self.live[bid] for bid in ids], np.float32)
        for op in self.ops:
            if op in self.pooled and len(self.pooled[op]) == len(self.boxes):
                fresh = pool_boxes(self.source, corners, self.settings.pool_settings(op))
                for j, bid in enumerate(ids):
                    self.pooled[op][index[bid]] = fresh[j]
        self._done(started, live=True)
        return True

    def _done(self, started, live):
        self._levels = self._find_levels()  # every pooling passes here: boxes, drags, ops, maps
        self.last_update_ms = (time.perf_counter() - started) * 1000
        self.events.emit("pooled", live=live)

    # ------------------------------------------------------------------ what to show
    def grid(self, op: str):
        """The selected box's pooled grid for ``op`` on the current channel, or None."""
        i = self.selected_index()
        if op not in self.pooled or i is None:
            return None
        return self.pooled[op][i, :, :, self.channel]

    def value_text(self, op: str, row: int, col: int) -> str | None:
        grid = self.grid(op)
        if grid is None or not (0 <= row < grid.shape[0] and 0 <= col < grid.shape[1]):
            return None
        return f"{OP_LABELS[op]} bin ({row}, {col}) = {grid[row, col]:.5g}"

    @property
    def gallery_op(self) -> str:
        return self.ops[-1]

    def gallery(self) -> Mosaic | None:
        """One tile per box: its pooled grid on the current channel, on a shared colour scale."""
        pooled = self.pooled.get(self.gallery_op)
        if pooled is None or len(pooled) == 0:
            return None
        tiles = pooled[:, :, :, self.channel]
        finite = tiles[np.isfinite(tiles)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        return tile([normalize(t, lo, hi) for t in tiles], gap=1)

    def box_at_gallery(self, mosaic: Mosaic, row: int, col: int):
        index = mosaic.index_at(row, col)
        return None if index is None or index >= len(self.boxes) else self.boxes[index]

    def feature_mosaic(self) -> Mosaic | None:
        """Every channel, shrunk to about MOSAIC_TILE pixels, per-channel or globally normalized."""
        if self.features is None:
            return None
        f = self.maps
        h, w, c = f.shape
        step = max(1, int(np.ceil(max(h, w) / MOSAIC_TILE)))
        small = f[::step, ::step]
        if self.settings.normalization == "global":
            lo, hi = float(small.min()), float(small.max())
            chans = [normalize(small[:, :, i], lo, hi) for i in range(c)]
        else:
            chans = [normalize(small[:, :, i]) for i in range(c)]
        return tile(chans, gap=1)

    def channel_image(self):
        """(channel map, levels or None for its own range)."""
        if self.features is None:
            return None, None
        f = self.maps
        chan = f[:, :, self.channel]
        if self.settings.normalization == "global":
            return chan, (float(f.min()), float(f.max()) + 1e-9)
        return chan, None

    def channel_name(self) -> str:
        if self.features is None:
            return ""
        names = self.features.channel_names
        return f"channel {self.channel}" + (f" ({names[self.channel]})" if self.channel < len(names) else "")

    def selected_on_features(self):
        """(x, y, w, h) of the selected box on the feature grid, or None."""
        box = self.selected_box()
        if box is None or self.features is None:
            return None
        x1, y1, x2, y2 = self.corners(box)
        s = self.features.spatial_scale
        return (x1 * s, y1 * s, (x2 - x1) * s, (y2 - y1) * s)

    def overlay(self):
        """Where the selected box's bins fall, in image pixels: (segments (N, 2) or None for
        RoIPool's rounded cells, sample points (M, 2) or None for RoIAlign's samples)."""
        box = self.selected_box()
        if box is None or self.features is None or box.problem():
            return None, None
        corners = self.corners(box)
        scale = self.features.spatial_scale
        stride = 1.0 / scale
        size = self.settings.output_size
        lines = points = None
        if MULTI_SCALE in self.ops and self.pyramid is not None:
            level = self.levels().get(box.id, -1)
            if level >= 0:
                scale = self.pyramid.level_scale(level)
                samples = roi_align_samples(corners, scale, size, self.settings.sampling_ratio, aligned=False)
                points = align_sample_points(samples, 1.0 / scale, offset=0.0)
            return None, points
        if "roi_pool" in self.ops:
            h, w = self.maps.shape[:2]
            lines = pool_cell_lines(roi_pool_cells(corners, scale, size, (h, w)), stride)
        if "roi_align" in self.ops:
            samples = roi_align_samples(corners, scale, size, self.settings.sampling_ratio, aligned=True)
            points = align_sample_points(samples, stride)
        return lines, points

    def feature_text(self, x: float, y: float) -> str | None:
        """The current channel's value under image pixel (x, y)."""
        if self.features is None:
            return None
        s = self.features.spatial_scale
        fh, fw = self.maps.shape[:2]
        fx, fy = int(np.floor(x * s)), int(np.floor(y * s))
        if 0 <= fx < fw and 0 <= fy < fh:
            return f"feature ({fy}, {fx}) = {self.maps[fy, fx, self.channel]:.4g}"
        return None

    def features_text(self) -> str:
        if self.features is None:
            return ""
        fh, fw, c = self.maps.shape
        return f"features {fw}x{fh}x{c}   stride {self.features.stride:.3g} (scale {self.features.spatial_scale:.4g})"


def pool_cell_lines(cells, stride):
    """Segments outlining RoIPool's bin cells (feature cell ranges) in image pixels."""
    rows, cols = cells["rows"], cells["cols"]
    segs = []
    x_lo, x_hi = cols.min() * stride, cols.max() * stride
    y_lo, y_hi = rows.min() * stride, rows.max() * stride
    for r0, r1 in rows:
        for y in (r0, r1):
            segs += [(x_lo, y * stride), (x_hi, y * stride)]
    for c0, c1 in cols:
        for x in (c0, c1):
            segs += [(x * stride, y_lo), (x * stride, y_hi)]
    return np.array(segs, dtype=np.float64).reshape(-1, 2)


def align_sample_points(samples, stride, offset=0.5):
    """RoIAlign's sample points in image pixels: feature coordinate y -> (y + offset) * stride,
    where ``offset`` is 0.5 for aligned=True (its half-pixel shift) and 0 otherwise."""
    ys = samples["ys"].ravel()
    xs = samples["xs"].ravel()
    if ys.size == 0 or xs.size == 0:
        return np.zeros((0, 2))
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([(gx.ravel() + offset) * stride, (gy.ravel() + offset) * stride], axis=1)
