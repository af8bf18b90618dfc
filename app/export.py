"""Headless export of regions (Qt-free): PNG crops with manifests, and pooled embeddings as
Parquet (streamed, one row group per image) or .npz.

Every output is written under a temporary name and renamed at the end, so an interrupted run
never leaves a half-written file under a final name, and re-running into the same folder
completes the job.
"""
from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from app.atomic import atomic_write_bytes, atomic_write_text
from app.formats.common import relative_stem
from app.extraction import extract_features, resolve_extractor
from app.images import read_image
from app.pooling import PoolSettings, pool_boxes

PARTIAL = ".partial"
MANIFEST_COLUMNS = ["crop", "image", "region_id", "label", "x1", "y1", "x2", "y2", "flags"]


@dataclass
class ExportOptions:
    out_dir: Path
    fmt: str = "parquet"  # parquet | npz
    crops: bool = False
    margin: int = 0
    extractor: str = "filters"
    layer: str | None = None
    op: str = "roi_align"
    output_size: tuple = (7, 7)
    sampling_ratio: int = -1

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        if self.fmt not in ("parquet", "npz"):
            raise ValueError(f"format must be 'parquet' or 'npz', got {self.fmt!r}")
        self.settings = PoolSettings(self.op, tuple(self.output_size), self.sampling_ratio)


@dataclass
class ExportSummary:
    images: int = 0
    regions: int = 0
    skipped: int = 0  # images that failed and contributed nothing
    failures: list = field(default_factory=list)
    seconds: float = 0.0
    stages: dict = field(default_factory=lambda: {"read": 0.0, "extract": 0.0, "pool": 0.0, "write": 0.0})

    def text(self) -> str:
        lines = [f"exported {self.regions} regions from {self.images} images in {self.seconds:.1f} s "
                 f"({self.skipped} images skipped)"]
        total = sum(self.stages.values()) or 1.0
        lines.append("time: " + ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f}%)" for k, v in self.stages.items()))
        if self.failures:
            lines.append(f"{len(self.failures)} problem(s):")
            lines += [f"  - {f}" for f in self.failures]
        return "\n".join(lines)


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


def embedding_table(columns) -> "pyarrow.Table":
    """One image's embedding columns (as built by ``image_regions``) as an Arrow table."""
    import pyarrow as pa

    emb = columns["embedding"]
    n, d = emb.shape
    table = pa.table({
        **{k: v for k, v in columns.items() if k not in ("output_size", "shape", "embedding")},
        "output_size": pa.FixedSizeListArray.from_arrays(pa.array(np.tile(columns["output_size"], n), pa.int32()), 2),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), d).cast(pa.list_(pa.float32())),
        "shape": pa.FixedSizeListArray.from_arrays(pa.array(np.tile(columns["shape"], n), pa.int32()), 3).cast(pa.list_(pa.int32())),
    })
    return table.set_column(table.schema.get_field_index("output_size"), "output_size",
                            table.column("output_size").cast(pa.list_(pa.int32())))


def empty_embedding_table() -> "pyarrow.Table":
    """No rows, the schema of ``embedding_table``."""
    import pyarrow as pa

    return pa.table({k: pa.array([], t) for k, t in (
        ("image", pa.string()), ("region_id", pa.int32()), ("label", pa.string()),
        ("x1", pa.float64()), ("y1", pa.float64()), ("x2", pa.float64()), ("y2", pa.float64()),
        ("extractor", pa.string()), ("layer", pa.string()), ("op", pa.string()),
        ("output_size", pa.list_(pa.int32())), ("embedding", pa.list_(pa.float32())), ("shape", pa.list_(pa.int32())))})


class _EmbeddingWriter:
    """Parquet: a row group per image through a ParquetWriter (memory stays flat).
    npz: rows collected, written once at the end."""

    def __init__(self, path, fmt):
        self.path, self.fmt = Path(path), fmt
        self.tmp = self.path.with_name(self.path.name + PARTIAL)
        self.rows, self.writer = [], None

    def add(self, columns):
        if self.fmt == "npz":
            self.rows.append(columns)
            return
        import pyarrow.parquet as pq

        table = embedding_table(columns)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, table.schema)
        self.writer.write_table(table)

    def close(self):
        if self.fmt == "parquet":
            if self.writer is None:
                import pyarrow.parquet as pq

                empty = empty_embedding_table()
                pq.write_table(empty, self.tmp)
            else:
                self.writer.close()
            self.tmp.replace(self.path)
            return
        keys = ("image", "region_id", "label", "x1", "y1", "x2", "y2", "extractor", "layer", "op")
        data = {k: np.concatenate([r[k] for r in self.rows]) if self.rows else np.array([]) for k in keys}
        if self.rows:
            data["embedding"] = np.concatenate([r["embedding"] for r in self.rows]).astype(np.float32)
            data["shape"] = np.array([r["shape"] for r in self.rows for _ in range(len(r["image"]))], np.int32)
            data["output_size"] = np.array([r["output_size"] for r in self.rows for _ in range(len(r["image"]))], np.int32)
        buf = io.BytesIO()
        np.savez(buf, **data)
        atomic_write_bytes(self.path, buf.getvalue())


def extractor_and_layer(options: ExportOptions):
    """The extractor named by the options and the layer to export (checked)."""
    extractor = resolve_extractor(options.extractor)
    layer = options.layer or extractor.default_layer
    if layer not in extractor.layers():
        raise ValueError(f"layer must be one of {extractor.layers()}, got {layer!r}")
    return extractor, layer


def image_regions(image, rgb, boxes, extractor, layer, options: ExportOptions, root, crops_dir):
    """One image's regions, shared by the local and the Ray engine so both give the same rows:
    features once, all boxes pooled in one call, crops written (with ``options.crops``).
    Returns (Parquet/npz columns, manifest rows, seconds spent per stage)."""
    t0 = time.perf_counter()
    feats = extract_features(extractor, rgb, layer)
    t1 = time.perf_counter()
    corners = np.array([b.corners() for b in boxes], np.float32)
    pooled = pool_boxes(feats, corners, options.settings)
    t2 = time.perf_counter()
    n = len(boxes)
    h, w = rgb.shape[:2]
    flags = [";".join(b.flags(w, h)) for b in boxes]
    columns = {
        "image": np.array([str(image)] * n), "region_id": np.arange(n, dtype=np.int32),
        "label": np.array([b.label for b in boxes]),
        "x1": corners[:, 0].astype(np.float64), "y1": corners[:, 1].astype(np.float64),
        "x2": corners[:, 2].astype(np.float64), "y2": corners[:, 3].astype(np.float64),
        "extractor": np.array([options.extractor] * n), "layer": np.array([layer] * n),
        "op": np.array([options.op] * n), "output_size": np.array(options.output_size, np.int32),
        "embedding": pooled.reshape(n, -1), "shape": np.array(pooled.shape[1:], np.int32),
    }
    manifest = []
    for i, b in enumerate(boxes):
        name = ""
        if options.crops:
            patch = _crop(rgb, b, options.margin)
            if patch is not None:
                name = crop_name(image, root, i)
                ok, png = cv2.imencode(".png", cv2.cvtColor(patch, cv2.COLOR_RGB2BGR))
                atomic_write_bytes(crops_dir / name, png.tobytes())
            else:
                flags[i] = ";".join(filter(None, [flags[i], "no-crop"]))
        manifest.append([f"crops/{name}" if name else "", str(image), i, b.label, *b.corners(), flags[i]])
    return columns, manifest, {"extract": t1 - t0, "pool": t2 - t1, "write": time.perf_counter() - t2}


def export(jobs, options: ExportOptions, images_root=None, progress=None) -> ExportSummary:
    """``jobs``: list of (image path, [Box]). ``progress``: optional wrapper around the iterable
    (e.g. tqdm). Feature maps are computed once per image; all its boxes pooled in one call."""
    started = time.perf_counter()
    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"*{PARTIAL}"):  # left by an interrupted run
        stale.unlink()
    summary = ExportSummary()
    extractor, layer = extractor_and_layer(options)
    writer = _EmbeddingWriter(out / f"embeddings.{options.fmt}", options.fmt)
    crops_dir = out / "crops"
    if options.crops:
        crops_dir.mkdir(exist_ok=True)
    manifest = []
    root = images_root or (Path(jobs[0][0]).parent if jobs else out)
    iterator = progress(jobs) if progress else jobs
    for image, boxes in iterator:
        t0 = time.perf_counter()
        try:
            rgb = read_image(image)
        except ValueError as exc:
            summary.failures.append(str(exc))
            summary.skipped += 1
            continue
        t1 = time.perf_counter()
        summary.stages["read"] += t1 - t0
        summary.images += 1
        if not boxes:
            continue
        columns, rows, times = image_regions(image, rgb, boxes, extractor, layer, options, root, crops_dir)
        t2 = time.perf_counter()
        writer.add(columns)
        manifest += rows
        summary.regions += len(boxes)
        for stage, seconds in times.items():
            summary.stages[stage] += seconds
        summary.stages["write"] += time.perf_counter() - t2
    t4 = time.perf_counter()
    writer.close()
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([MANIFEST_COLUMNS] + manifest)
    atomic_write_text(out / "manifest.csv", buf.getvalue())
    atomic_write_text(out / "manifest.json", json.dumps([dict(zip(MANIFEST_COLUMNS, row)) for row in manifest], indent=1, ensure_ascii=False))
    summary.stages["write"] += time.perf_counter() - t4
    summary.seconds = time.perf_counter() - started
    return summary
