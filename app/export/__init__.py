"""Headless export of regions (Qt-free): PNG crops with manifests, and pooled embeddings as
Parquet (streamed, one row group per image) or .npz.

One bad item never costs the rest: whatever goes wrong with one image (unreadable, too large,
a box that cannot be pooled, an extractor error) is named in the summary and the run goes on.
Writing is different: a failed write (disk full) stops the run, removes every temporary file
and names the path. Embeddings and manifests are written under temporary names and renamed at
the end, so an interrupted run never leaves a half-written file under a final name, and
re-running into the same folder completes the job. One run at a time per output folder.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from app.atomic import atomic_write_bytes, commit, open_temp, remove_quietly
from app.export.embeddings import (EMBEDDING_SCHEMA, PARTIAL, EmbeddingWriter, _EmbeddingWriter,  # noqa: F401
                                   embedding_table)
from app.extraction import extract_features, resolve_extractor
from app.formats.common import relative_stem
from app.images import load_image
from app.outlock import OutputInUse, output_lock  # noqa: F401 (callers catch OutputInUse from here)
from app.pooling import PoolSettings, pool_boxes
from app.problems import describe, safe_text

MANIFEST_COLUMNS = ["crop", "image", "region_id", "label", "x1", "y1", "x2", "y2", "flags"]
FLOAT32_MAX = float(np.finfo(np.float32).max)


class ExportWriteError(RuntimeError):
    """Writing an output failed; the message names the path. Temporary files are gone."""


@dataclass
class ExportOptions:
    out_dir: Path
    fmt: str = "parquet"  # parquet | npz
    crops: bool = False
    margin: int = 0
    extractor: str = "filters"
    layer: str | None = None
    settings: PoolSettings = field(default_factory=PoolSettings)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        if self.fmt not in ("parquet", "npz"):
            raise ValueError(f"format must be 'parquet' or 'npz', got {self.fmt!r}")
        if not isinstance(self.settings, PoolSettings):
            raise ValueError(f"settings must be a PoolSettings, got {self.settings!r}")

    @property
    def op(self) -> str:
        return self.settings.op

    @property
    def output_size(self) -> tuple:
        return tuple(self.settings.output_size)

    @property
    def sampling_ratio(self) -> int:
        return self.settings.sampling_ratio


@dataclass
class ExportSummary:
    images: int = 0
    regions: int = 0
    skipped: int = 0  # images that failed and contributed nothing
    skipped_regions: int = 0  # boxes that could not be pooled (their image's others were exported)
    failures: list = field(default_factory=list)  # one line per failed file, image or box: exit 1
    warnings: list = field(default_factory=list)  # worth knowing, nothing lost (multi-page files)
    seconds: float = 0.0
    stages: dict = field(default_factory=lambda: {"read": 0.0, "extract": 0.0, "pool": 0.0, "write": 0.0})

    def text(self) -> str:
        """Printable whatever bytes the file names hold."""
        skipped = f"{self.skipped} images skipped" + (f", {self.skipped_regions} regions skipped" if self.skipped_regions else "")
        lines = [f"exported {self.regions} regions from {self.images} images in {self.seconds:.1f} s ({skipped})"]
        total = sum(self.stages.values()) or 1.0
        lines.append("time: " + ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f}%)" for k, v in self.stages.items()))
        if self.warnings:
            lines.append(f"{len(self.warnings)} warning(s):")
            lines += [f"  - {w}" for w in self.warnings]
        if self.failures:
            lines.append(f"{len(self.failures)} problem(s):")
            lines += [f"  - {f}" for f in self.failures]
        return safe_text("\n".join(lines))


def crop_name(image, root, region_id) -> str:
    """Stable crop file name from the image path relative to the root and the region index."""
    safe = re.sub(r"[^\w.-]+", "_", relative_stem(image, root).as_posix().replace("/", "__"))
    return f"{safe}_{region_id:04d}.png"


def _crop(rgb, box, margin):
    h, w = rgb.shape[:2]
    x1, y1 = int(np.floor(max(box.x1 - margin, 0))), int(np.floor(max(box.y1 - margin, 0)))
    x2, y2 = int(np.ceil(min(box.x2 + margin, w))), int(np.ceil(min(box.y2 + margin, h)))
    if x2 <= x1 or y2 <= y1:
        return None
    return rgb[y1:y2, x1:x2]


def box_problem(box) -> str | None:
    """Why ``box`` cannot be pooled (coordinates beyond float32 or not finite), or None."""
    problem = box.problem()
    if problem is None and not all(np.isfinite(v) and abs(v) <= FLOAT32_MAX for v in box.corners()):
        problem = f"coordinates {list(box.corners())} are not finite float32 numbers"
    return problem


@dataclass
class _Prepared:
    """One image's results, computed before anything is written (so its failure writes nothing)."""
    columns: dict
    table: object
    crops: list  # (file name, PNG bytes)
    manifest: list


def _prepare(image, boxes, extractor, layer, options, root, summary) -> _Prepared | None:
    t0 = time.perf_counter()
    rgb, info = load_image(image)
    if info.pages > 1:
        summary.warnings.append(pages_warning(image, info))
    summary.stages["read"] += time.perf_counter() - t0
    return prepare_pixels(image, rgb, boxes, extractor, layer, options, root, summary)


def pages_warning(image, info) -> str:
    return safe_text(f"{image}: has {info.pages} pages or frames; only the first was exported")


def prepare_pixels(image, rgb, boxes, extractor, layer, options, root, summary) -> _Prepared | None:
    """One decoded image's rows, crops and manifest lines (shared with the Ray engine, whose
    reading is a stage of its own); unpoolable boxes are counted in ``summary``."""
    t1 = time.perf_counter()
    kept = []
    for i, b in enumerate(boxes):
        problem = box_problem(b)
        if problem is None:
            kept.append((i, b))
        else:
            summary.failures.append(safe_text(f"{image}: region {i} ({b.label}): {problem}; not exported"))
            summary.skipped_regions += 1
    if not kept:
        return None
    feats = extract_features(extractor, rgb, layer)
    t2 = time.perf_counter()
    corners = np.array([b.corners() for _, b in kept], np.float32)
    pooled = pool_boxes(feats, corners, options.settings)
    t3 = time.perf_counter()
    n, (h, w) = len(kept), rgb.shape[:2]
    image_text = safe_text(image)
    columns = {
        "image": np.array([image_text] * n), "region_id": np.array([i for i, _ in kept], np.int32),
        "label": np.array([safe_text(b.label) for _, b in kept]),
        "x1": corners[:, 0].astype(np.float64), "y1": corners[:, 1].astype(np.float64),
        "x2": corners[:, 2].astype(np.float64), "y2": corners[:, 3].astype(np.float64),
        "extractor": np.array([safe_text(options.extractor)] * n), "layer": np.array([safe_text(layer)] * n),
        "op": np.array([options.op] * n), "output_size": np.array(options.output_size, np.int32),
        "embedding": pooled.reshape(n, -1), "shape": np.array(pooled.shape[1:], np.int32),
    }
    table = embedding_table(columns) if options.fmt == "parquet" else None
    crops, manifest = [], []
    for i, b in kept:
        flags, name = b.flags(w, h), ""
        if options.crops:
            patch = _crop(rgb, b, options.margin)
            if patch is None:
                flags.append("no-crop")
            else:
                name = crop_name(image, root, i)
                ok, png = cv2.imencode(".png", cv2.cvtColor(patch, cv2.COLOR_RGB2BGR))
                crops.append((name, png.tobytes()))
        # str(image) keeps a non-UTF-8 name exactly; the manifest writers escape it
        manifest.append([f"crops/{name}" if name else "", str(image), i, b.label, *b.corners(), ";".join(flags)])
    summary.stages["extract"] += t2 - t1
    summary.stages["pool"] += t3 - t2
    summary.stages["write"] += time.perf_counter() - t3
    return _Prepared(columns, table, crops, manifest)


@contextmanager
def _writing(path):
    """Turn an OSError while writing ``path`` into one message that names it."""
    try:
        yield
    except OSError as exc:
        raise ExportWriteError(f"cannot write {safe_text(path)}: {exc.strerror or exc}; the export stopped "
                               "and removed its temporary files") from exc


def _stage(path, data: bytes, staged: list):
    """Write ``data`` under a temporary name beside ``path``; committed later with the rest."""
    with _writing(path):
        fd, tmp = open_temp(path)
        staged.append((tmp, path))
        with open(fd, "wb", closefd=True) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def _manifest_bytes(manifest) -> tuple[bytes, bytes]:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([MANIFEST_COLUMNS] + manifest)
    rows = [dict(zip(MANIFEST_COLUMNS, row)) for row in manifest]
    # backslashreplace turns a non-UTF-8 name's surrogates into \udcNN, which in a JSON string is
    # the escape json.loads reads back to the same str, so manifest.json keeps such names exactly
    text = json.dumps(rows, indent=1, ensure_ascii=False)
    return buf.getvalue().encode("utf-8", "backslashreplace"), text.encode("utf-8", "backslashreplace")


def extractor_and_layer(options: ExportOptions):
    """The extractor named by the options and the layer to export (checked)."""
    extractor = resolve_extractor(options.extractor)
    layer = options.layer or extractor.default_layer
    if layer not in extractor.layers():
        raise ValueError(f"layer must be one of {extractor.layers()}, got {layer!r}")
    return extractor, layer


def export(jobs, options: ExportOptions, images_root=None, progress=None) -> ExportSummary:
    """``jobs``: list of (image path, [Box]). ``progress``: optional wrapper around the iterable
    (e.g. tqdm). Feature maps are computed once per image; all its boxes pooled in one call.
    Raises ValueError (bad options), OutputInUse, ExportWriteError; per-image problems are in
    the returned summary."""
    started = time.perf_counter()
    extractor, layer = extractor_and_layer(options)
    out = options.out_dir
    with _writing(out):
        out.mkdir(parents=True, exist_ok=True)
    with output_lock(out):
        # left by a killed run (not by a running one: we hold the lock)
        for stale in [*out.glob(f"*{PARTIAL}"), *out.glob(".*.tmp"), *(out / "crops").glob(".*.tmp")]:
            remove_quietly(stale)
        summary = _run(jobs, options, extractor, layer, images_root, progress)
    summary.seconds = time.perf_counter() - started
    return summary


def _run(jobs, options, extractor, layer, images_root, progress) -> ExportSummary:
    out, summary = options.out_dir, ExportSummary()
    writer = EmbeddingWriter(out / f"embeddings.{options.fmt}", options.fmt)
    crops_dir, manifest, staged = out / "crops", [], []
    root = images_root or (Path(jobs[0][0]).parent if jobs else out)
    try:
        if options.crops:
            with _writing(crops_dir):
                crops_dir.mkdir(exist_ok=True)
        for image, boxes in (progress(jobs) if progress else jobs):
            try:
                item = _prepare(image, boxes, extractor, layer, options, root, summary)
            except Exception as exc:  # any failure of one image: named, counted, the rest goes on
                summary.failures.append(describe(image, exc))
                summary.skipped += 1
                continue
            summary.images += 1
            if item is not None:
                t0 = time.perf_counter()
                _write_item(item, writer, crops_dir)
                manifest += item.manifest
                summary.regions += len(item.manifest)
                summary.stages["write"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        with _writing(writer.path):
            staged.append((writer.finish(), writer.path))
        csv_bytes, json_bytes = _manifest_bytes(manifest)
        _stage(out / "manifest.csv", csv_bytes, staged)
        _stage(out / "manifest.json", json_bytes, staged)
        for tmp, path in staged:
            with _writing(path):
                commit(tmp, path)
        summary.stages["write"] += time.perf_counter() - t0
    except BaseException:
        writer.abort()
        for tmp, _ in staged:
            remove_quietly(tmp)
        raise
    return summary


def _write_item(item: _Prepared, writer, crops_dir):
    with _writing(writer.path):
        writer.add(item.columns, item.table)
    for name, png in item.crops:
        with _writing(crops_dir / name):
            atomic_write_bytes(crops_dir / name, png)
