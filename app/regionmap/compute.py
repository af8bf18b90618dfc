"""Embeddings of every region of a folder, through the same code as export (``read_image`` ->
``extract_features`` -> ``pool_boxes`` -> flatten), cached per image on disk."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from app.extraction import ExtractorRegistry, extract_features
from app.images import read_image
from app.pooling import PoolSettings, pool_boxes
from app.project import Project
from app.regionmap.cache import EmbeddingCache, cache_key, content_hash, extractor_identity
from app.regionmap.table import RegionTable


@dataclass(frozen=True)
class MapSettings:
    """What an embedding depends on. The defaults are export's and the window's."""

    extractor: str = "filters"
    layer: str | None = None  # None: the extractor's default layer ("stride 4" for filters)
    op: str = "roi_align"
    output_size: tuple = (7, 7)
    sampling_ratio: int = -1

    def __post_init__(self):
        object.__setattr__(self, "output_size", tuple(int(v) for v in self.output_size))
        PoolSettings(self.op, self.output_size, self.sampling_ratio)  # validates op

    def pool(self) -> PoolSettings:
        return PoolSettings(self.op, self.output_size, self.sampling_ratio)

    def resolved(self, extractor) -> "MapSettings":
        layer = self.layer or extractor.default_layer
        if layer not in extractor.layers():
            raise ValueError(f"layer must be one of {extractor.layers()}, got {layer!r}")
        return MapSettings(self.extractor, layer, self.op, self.output_size, self.sampling_ratio)

    def key_fields(self) -> dict:
        fields = asdict(self)
        fields["extractor"] = extractor_identity(self.extractor)
        fields["output_size"] = list(self.output_size)
        return fields


@dataclass
class ComputeResult:
    table: RegionTable
    problems: list = field(default_factory=list)  # "path: reason" per image or box skipped
    hits: int = 0  # images whose embeddings came from the cache
    computed: int = 0
    cancelled: bool = False
    seconds: float = 0.0


def folder_jobs(paths) -> tuple[list, list]:
    """(jobs, problems): each image of ``paths`` (files or folders) with its labelme boxes, ids as
    the main window numbers them (``Project``), so a point and its box share (image, box id)."""
    project = Project()
    project.open(paths)
    jobs, problems = [], []
    for doc in project.images:
        doc.load()
        if doc.load_error:
            problems.append(doc.load_error)
        jobs.append((doc.path, list(doc.boxes)))
    return jobs, problems


def image_embeddings(extractor, path, corners, settings: MapSettings, cache: EmbeddingCache | None):
    """(K, D) embeddings of one image's boxes and whether they came from the cache."""
    key = None
    if cache is not None:
        key = cache_key(content_hash(path), settings.key_fields(), corners)
        cached = cache.load(key)
        if cached is not None and len(cached) == len(corners):
            return cached, True
    rgb = read_image(path)
    feats = extract_features(extractor, rgb, settings.layer)
    pooled = pool_boxes(feats, corners, settings.pool())
    emb = pooled.reshape(len(corners), -1)
    if cache is not None:
        cache.store(key, emb)
    return emb, False


def compute_table(jobs, settings: MapSettings = MapSettings(), registry=None, cache=None,
                  progress=None, cancelled=None) -> ComputeResult:
    """Embeddings of every box of ``jobs`` ((image path, [Box]) pairs). ``progress(done, total,
    path)`` is called after each image; ``cancelled()`` is checked before each image and ends the
    run with what is done so far. One image failing (any exception) costs only that image.
    ``cache``: an ``EmbeddingCache``, ``None`` for the default folder, ``False`` for none."""
    started = time.perf_counter()
    registry = registry or ExtractorRegistry()
    cache = EmbeddingCache() if cache is None else (cache or None)
    extractor = registry.get(settings.extractor)
    settings = settings.resolved(extractor)
    result = ComputeResult(RegionTable.empty(settings=_describe(settings)))
    parts = []
    for done, (path, boxes) in enumerate(jobs, 1):
        if cancelled is not None and cancelled():
            result.cancelled = True
            break
        usable = []
        for b in boxes:
            problem = b.problem()
            if problem:
                result.problems.append(f"{path}: box {b.id} skipped: {problem}")
            else:
                usable.append(b)
        if usable:
            corners = np.array([b.corners() for b in usable], np.float32)
            try:
                emb, hit = image_embeddings(extractor, path, corners, settings, cache)
            except Exception as exc:  # noqa: BLE001 - one bad image never costs the rest
                result.problems.append(f"{path}: {exc}" if str(path) not in str(exc) else str(exc))
                emb = None
            if emb is not None:
                result.hits += hit
                result.computed += not hit
                parts.append(RegionTable([str(path)] * len(usable), [b.id for b in usable],
                                         [b.label for b in usable], corners, emb))
        if progress is not None:
            progress(done, len(jobs), path)
    result.table = RegionTable.concat(parts, _describe(settings))
    result.seconds = time.perf_counter() - started
    return result


def embed_boxes(registry, path, corners, settings: MapSettings, cache=None) -> np.ndarray:
    """Embeddings of some boxes of one image (a box edited in the window), same code path."""
    extractor = registry.get(settings.extractor)
    emb, _ = image_embeddings(extractor, path, np.asarray(corners, np.float32).reshape(-1, 4),
                              settings.resolved(extractor), cache)
    return emb


def _describe(settings: MapSettings) -> dict:
    return {"extractor": settings.extractor, "layer": settings.layer, "op": settings.op,
            "output_size": list(settings.output_size), "sampling_ratio": settings.sampling_ratio}
