"""The Ray export's stages, run inside Ray workers (this module imports no Ray).

``read_chunk`` (a task): read and decode a chunk's images. ``EmbedChunk`` (an actor: it builds
its extractor once): extract, pool all of an image's boxes in one call, write crops and the
chunk's Parquet part. Each image goes through ``app.export.image_regions``, the very code of the
local export, so both engines give the same rows. A failing image is named in the chunk's
receipt and the rest of the chunk goes on; only a failure to write the part fails the task.
"""
from __future__ import annotations

import pickle
import time
from pathlib import Path

from app.export import embedding_table, extractor_and_layer, image_regions
from app.export_ray.parts import EMBEDDINGS_DIR, write_part
from app.images import read_image

STAGES = ("read", "extract", "pool", "write")


def failure_text(image, exc: BaseException) -> str:
    """``path: reason``, whatever the exception type."""
    text = str(exc) or type(exc).__name__
    return text if text.startswith(str(image)) else f"{image}: {type(exc).__name__}: {text}"


def read_chunk(row: dict) -> dict:
    """Ray Data ``map`` stage: the decoded images (None where reading failed), pickled so that
    images of different sizes travel as one value."""
    started = time.perf_counter()
    images, failures = [], []
    for image, _ in pickle.loads(row["jobs"]):
        try:
            images.append(read_image(image))
        except Exception as exc:  # one bad file never costs the rest
            images.append(None)
            failures.append(failure_text(image, exc))
    return {**row, "pixels": pickle.dumps(images, protocol=5), "read_failures": pickle.dumps(failures),
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
        results = [self.embed(pickle.loads(jobs), pickle.loads(pixels), pickle.loads(failures), float(read_s), str(part))
                   for jobs, pixels, failures, read_s, part in zip(
                       batch["jobs"], batch["pixels"], batch["read_failures"], batch["read_s"], batch["part"])]
        return {key: [r[key] for r in results] for key in results[0]} if results else {}

    def embed(self, jobs, pixels, failures, read_s, part) -> dict:
        seconds = dict.fromkeys(STAGES, 0.0)
        seconds["read"] = read_s
        tables, manifest, exported, regions = [], [], 0, 0
        for (image, boxes), rgb in zip(jobs, pixels):
            if rgb is None:
                continue
            try:
                if boxes:
                    columns, rows, times = image_regions(image, rgb, boxes, self.extractor, self.layer,
                                                         self.options, self.root, self.crops_dir)
                    tables.append(embedding_table(columns))
                    manifest += rows
                    regions += len(boxes)
                    for stage, value in times.items():
                        seconds[stage] += value
            except Exception as exc:  # named in the summary; the chunk goes on
                failures.append(failure_text(image, exc))
                continue
            exported += 1
        started = time.perf_counter()
        receipt = {"images": exported, "skipped": len(jobs) - exported, "regions": regions,
                   "failures": failures, "manifest": manifest}
        write_part(self.emb_dir / part, tables, receipt)
        seconds["write"] += time.perf_counter() - started
        return {"part": part, "images": len(jobs), "exported": exported, "regions": regions,
                **{f"{stage}_s": value for stage, value in seconds.items()}}
