"""Multi-level feature maps for multi-scale RoIAlign (FPN-style), Qt-free.

An extractor offers a pyramid when it has maps at two or more strides with one channel count:
the filter bank's four strides, or a Keras model's last layer at each stride (a user's FPN, whose
levels share their channels; a plain backbone's C2-C5 differ in channels and cannot be stacked). The
pyramid is extracted on the same size-capped copy as single maps; ``multi_scale_roi_align``
then infers each level's scale from its size relative to that copy, so boxes are passed in the
copy's pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from app.images import capped_for_extraction
from roi_core import multi_scale_levels, multi_scale_roi_align
from roi_core._multi_scale import infer_scale  # the op's own rounding, so the overlay agrees
from roi_core.backbones import Extractor, Features, FilterBankExtractor, ModelExtractor

PYRAMID = "pyramid (multi-scale)"  # the layer choice that means "all levels"
_PROBE_SIDE = 128  # image side used to learn a model's layer strides


@dataclass(frozen=True)
class Pyramid:
    levels: tuple  # Features per level, finest first; strides in original-image pixels
    image_size: tuple  # (h, w) of the copy the maps were extracted from
    factor: float  # original-image pixels per copy pixel

    @property
    def finest(self) -> Features:
        return self.levels[0]

    def level_scale(self, level: int) -> float:
        """Feature cells per original-image pixel of ``level``, as multi_scale_roi_align infers
        it (the power of two nearest to the map's height over the copy's), over the factor."""
        return infer_scale(self.levels[level].features.shape[1], self.image_size[0]) / self.factor

    def _copy_boxes(self, boxes_px):
        return np.asarray(boxes_px, np.float32).reshape(-1, 4) / np.float32(self.factor)

    def levels_of(self, boxes_px) -> np.ndarray:
        """The level each box pools from (0: finest; -1: none), as multi_scale_roi_align picks."""
        shapes = [lvl.features.shape for lvl in self.levels]
        return multi_scale_levels(self._copy_boxes(boxes_px), shapes, self.image_size)

    def pool(self, boxes_px, output_size, sampling_ratio) -> np.ndarray:
        """``(K, 4)`` original-image boxes -> ``(K, ph, pw, C)`` by multi-scale RoIAlign."""
        boxes = self._copy_boxes(boxes_px)
        rows = np.concatenate([np.zeros((len(boxes), 1), np.float32), boxes], axis=1)
        maps = [lvl.features for lvl in self.levels]
        out = multi_scale_roi_align(maps, rows, output_size, self.image_size, sampling_ratio)
        return np.array(out, dtype=np.float32)


def pyramid_layers(extractor: Extractor) -> list[str]:
    """The layers that make the extractor's pyramid, finest first; [] when it has one stride."""
    if isinstance(extractor, FilterBankExtractor):
        return extractor.layers()
    if not isinstance(extractor, ModelExtractor):
        return []
    cached = getattr(extractor, "_pyramid_layers", None)
    if cached is None:
        cached = extractor._pyramid_layers = _model_pyramid(extractor)
    return cached


def _model_pyramid(extractor: ModelExtractor) -> list[str]:
    """The last layer at each stride of 2 or more among layers with one channel count (the
    levels are pooled into one tensor, as an FPN's outputs are), learnt from one probe image."""
    shape = extractor.model.inputs[0].shape
    h = shape[1] or _PROBE_SIDE
    w = shape[2] or _PROBE_SIDE
    probe = np.zeros((h, w, 3), np.float32)
    by_channels = {}  # channels -> {stride: last layer}
    for layer in extractor.layers():
        try:
            _, out_h, _, channels = extractor.extract(probe, layer).features.shape
        except Exception:  # a layer that cannot run alone on the probe is not a level
            continue
        stride = h / out_h
        if stride >= 2:
            by_channels.setdefault(channels, {})[round(stride, 3)] = layer  # model order: the last wins
    best = max(by_channels.values(), key=len, default={})
    return [best[s] for s in sorted(best)] if len(best) >= 2 else []


def offers_pyramid(extractor: Extractor) -> bool:
    return len(pyramid_layers(extractor)) >= 2


def extract_pyramid(extractor: Extractor, rgb, capped=None) -> Pyramid:
    small, factor = capped if capped is not None else capped_for_extraction(rgb)
    levels = []
    for layer in pyramid_layers(extractor):
        feats = extractor.extract(small, layer)
        levels.append(feats if factor == 1.0 else replace(feats, stride=feats.stride * factor))
    if len(levels) < 2:
        raise ValueError(f"{extractor.name} has no maps at several strides to make a pyramid")
    return Pyramid(tuple(levels), tuple(small.shape[:2]), float(factor))
