"""Pooling boxes on cached feature maps (Qt-free; shared by the GUI and the exporter so that
both produce the same numbers for the same box)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roi_core import roi_align, roi_pool
from app.pyramid import PYRAMID, Pyramid

MULTI_SCALE = "multi_scale_roi_align"  # needs a pyramid (the layer app.pyramid.PYRAMID)
OPS = ("roi_pool", "roi_align", MULTI_SCALE)


@dataclass(frozen=True)
class PoolSettings:
    op: str = "roi_align"  # roi_pool | roi_align | multi_scale_roi_align
    output_size: tuple[int, int] = (7, 7)
    sampling_ratio: int = -1
    aligned: bool = True

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")


def pool_boxes(features, boxes_px, settings: PoolSettings) -> np.ndarray:
    """``(K, 4)`` pixel boxes of the original image -> ``(K, ph, pw, C)`` float32. ``features``
    come from ``app.extraction.extract_features`` (stride in original-image pixels): one map's
    ``Features``, or a ``Pyramid`` (multi-scale RoIAlign; single-map ops use its finest level)."""
    boxes_px = np.asarray(boxes_px, dtype=np.float32).reshape(-1, 4)
    if isinstance(features, Pyramid):
        if settings.op == MULTI_SCALE:
            return features.pool(boxes_px, settings.output_size, settings.sampling_ratio)
        features = features.finest
    elif settings.op == MULTI_SCALE:
        raise ValueError(f"{MULTI_SCALE} needs the feature pyramid (layer {PYRAMID!r}), not a single map")
    rows = np.concatenate([np.zeros((len(boxes_px), 1), np.float32), boxes_px], axis=1)
    scale = features.spatial_scale
    if settings.op == "roi_pool":
        out = roi_pool(features.features, rows, settings.output_size, scale)
    else:
        out = roi_align(features.features, rows, settings.output_size, scale, settings.sampling_ratio, settings.aligned)
    return np.array(out, dtype=np.float32)  # a writable copy: the GUI updates rows in place
