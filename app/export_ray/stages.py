"""The Ray export's stages, run inside Ray workers (this module imports no Ray).

``read_chunk`` (a task): read and decode a chunk's images. ``EmbedChunk`` (an actor: it builds
its extractor once): extract, pool all of an image's boxes in one call, write crops and the
chunk's Parquet part. Each image goes through ``app.export.prepare_pixels``, the very code of the
local export, so both engines give the same rows and name the same problems. A failing image is
named in the chunk's receipt and the rest of the chunk goes on; only a failure to write the part
or a crop fails the task (and the run, as in the local export).
"""
from __future__ import annotations

import pickle
import time
from pathlib import Path

from app.atomic import atomic_write_bytes
from app.export import ExportSummary, extractor_and_layer, pages_warning, prepare_pixels
from app.export_ray.parts import EMBEDDINGS_DIR, write_part
from app.export_ray.remote import read_remote_image
from app.images import load_image
from app.problems import describe

STAGES = ("read", "extract", "pool", "write")


def read_chunk(row: dict, filesystem=None) -> dict:
    """Ray Data ``map`` stage: the decoded images (None where reading failed), pickled so that
    images of different sizes travel as one value. ``filesystem``: the pyarrow filesystem that
    holds the chunk's images when they are on object storage (``RemoteImage``)."""
    started = time.perf_counter()
    images, failures, warnings = [], [], []
    for image, _ in pickle.loads(row["jobs"]):
        try:
            rgb, info = load_image(image) if filesystem is None else read_remote_image(image, filesystem)
        except Exception as exc:  # one bad file never costs the rest
            images.append(None)
            failures.append(describe(image, exc))
            continue
        images.append(rgb)
        if info.pages > 1:
            warnings.append(pages_warning(image, info))
    notes = {"failures": failures, "warnings": warnings}
    return {**row, "pixels": pickle.dumps(images, protocol=5), "notes": pickle.dumps(notes),
            "read_s": time.perf_counter() - started}


def _grow_gpu_memory() -> None:
    """TensorFlow takes a whole GPU by default; actors sharing one (``--gpus-per-worker 0.5``)
    must allocate as they go. Ray has already limited the GPUs this process sees."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # the device was initialized already: nothing left to set
            pass


class EmbedChunk:
    """Ray Data actor stage over chunks (``batch_size=1``): one Parquet part per chunk."""

    def __init__(self, options, out_dir: str, root: str):
        self.options, self.root = options, Path(root)
        self.emb_dir = Path(out_dir) / EMBEDDINGS_DIR
        self.crops_dir = Path(out_dir) / "crops"
        _grow_gpu_memory()
        self.extractor, self.layer = extractor_and_layer(options)  # once per actor

    def __call__(self, batch: dict) -> dict:
        results = [self.embed(pickle.loads(jobs), pickle.loads(pixels), pickle.loads(notes), float(read_s), str(part))
                   for jobs, pixels, notes, read_s, part in zip(
                       batch["jobs"], batch["pixels"], batch["notes"], batch["read_s"], batch["part"])]
        return {key: [r[key] for r in results] for key in results[0]} if results else {}

    def embed(self, jobs, pixels, notes, read_s, part) -> dict:
        # the local export's summary, for this chunk: stages, unpoolable boxes, failures, warnings
        chunk = ExportSummary(failures=notes["failures"], warnings=notes["warnings"])
        chunk.stages["read"] = read_s
        tables, manifest = [], []
        for (image, boxes), rgb in zip(jobs, pixels):
            if rgb is None:
                chunk.skipped += 1
                continue
            try:
                item = prepare_pixels(image, rgb, boxes, self.extractor, self.layer, self.options, self.root, chunk)
            except Exception as exc:  # named in the summary; the chunk goes on
                chunk.failures.append(describe(image, exc))
                chunk.skipped += 1
                continue
            chunk.images += 1
            if item is not None:
                started = time.perf_counter()
                for name, png in item.crops:
                    atomic_write_bytes(self.crops_dir / name, png)
                tables.append(item.table)
                manifest += item.manifest
                chunk.regions += len(item.manifest)
                chunk.stages["write"] += time.perf_counter() - started
        started = time.perf_counter()
        receipt = {"images": chunk.images, "skipped": chunk.skipped, "regions": chunk.regions,
                   "skipped_regions": chunk.skipped_regions, "failures": chunk.failures,
                   "warnings": chunk.warnings, "manifest": manifest}
        write_part(self.emb_dir / part, tables, receipt)
        chunk.stages["write"] += time.perf_counter() - started
        return {"part": part, "images": len(jobs), "regions": chunk.regions,
                **{f"{stage}_s": chunk.stages[stage] for stage in STAGES}}
