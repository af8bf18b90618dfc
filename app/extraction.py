"""Feature extraction for the application (Qt-free): one registry of extractors shared by the
GUI and the exporters, and one function that extracts on a size-capped copy of an image.

The registry is the only place an extractor is built (a built-in name, a Keras Application, or
a user's ``.keras``/``.h5`` file); building a Keras model is slow, so each is built once, under a
lock, because the GUI's worker thread and its export task may ask at the same time.
"""
from __future__ import annotations

import threading
from dataclasses import replace

from app.images import capped_for_extraction
from app.model_files import MODEL_SUFFIXES, load_user_model
from app.pyramid import PYRAMID, extract_pyramid, offers_pyramid
from roi_core.backbones import Extractor, builtin_extractors, get_extractor


class ExtractorRegistry:
    def __init__(self):
        self._lock = threading.Lock()
        self._built: dict[str, Extractor] = {}

    def names(self) -> list[str]:
        with self._lock:
            loaded = [n for n in self._built if n not in builtin_extractors()]
        return builtin_extractors() + loaded

    def get(self, name: str) -> Extractor:
        """The extractor called ``name``: built-in, Keras Application, an added model, or a model
        file path. Raises ``ValueError``/``WeightsUnavailable`` with a message for the user."""
        with self._lock:
            if name not in self._built:
                if str(name).lower().endswith(MODEL_SUFFIXES):
                    self._built[name] = load_user_model(name)
                else:
                    self._built[name] = get_extractor(name)
            return self._built[name]

    def add(self, extractor: Extractor) -> Extractor:
        """Register an extractor built elsewhere (a model the user loaded) under its name."""
        with self._lock:
            self._built[extractor.name] = extractor
        return extractor


def extract_features(extractor: Extractor, rgb, layer: str | None = None, capped=None):
    """Features of ``rgb`` (an original-size image) on a copy no larger than the extraction cap.
    The returned stride is in original-image pixels (the downscale factor folded in once, here),
    so every caller pools with ``features.spatial_scale`` and nothing else. ``capped``: the
    ``capped_for_extraction(rgb)`` pair when the caller already made it (the GUI shows it)."""
    if layer == PYRAMID:  # every level, for multi-scale RoIAlign
        return extract_pyramid(extractor, rgb, capped)
    small, factor = capped if capped is not None else capped_for_extraction(rgb)
    feats = extractor.extract(small, layer)
    return feats if factor == 1.0 else replace(feats, stride=feats.stride * factor)


def layer_choices(extractor: Extractor) -> list[str]:
    """The extractor's layers, plus the pyramid of all levels when it has several strides."""
    return extractor.layers() + ([PYRAMID] if offers_pyramid(extractor) else [])


def resolve_extractor(name) -> Extractor:
    """A fresh extractor by name or model path (for one-off callers such as the CLI export)."""
    if str(name).lower().endswith(MODEL_SUFFIXES):
        return load_user_model(name)
    return get_extractor(name)
