"""The Ray export's plan (driver side, Ray-free): images cut into chunks of ``batch_size`` in
input order, each named by a key over its content and the export settings.

A chunk is the unit of work and of output: one Ray batch, one Parquet part named by its key.
Because the key covers everything that decides the chunk's rows (image paths, their size and
modification time, the boxes, the extractor and pooling settings), a re-run finds the parts that
are still valid by name and computes only the rest; an edited image, box or setting gives a new
key, and the part it replaces is removed at the end of the run.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

KEY_VERSION = 1  # bump when the rows a chunk produces change for the same inputs


@dataclass(frozen=True)
class Chunk:
    index: int  # position in the input: part names sort in input order
    key: str
    jobs: list  # [(image path, [Box])]

    @property
    def part_name(self) -> str:
        return f"part-{self.index:08d}-{self.key}.parquet"

    @property
    def images(self) -> int:
        return len(self.jobs)

    def row(self) -> dict:
        """The chunk as a Ray Data row: its key and its jobs pickled (paths of any bytes and
        boxes with their attributes travel unchanged)."""
        return {"part": self.part_name, "jobs": pickle.dumps(self.jobs, protocol=5), "images": self.images}


def settings_fingerprint(options, layer, root) -> dict:
    """Everything besides the images that decides a chunk's rows, crops and manifest."""
    fingerprint = {
        "version": KEY_VERSION, "extractor": str(options.extractor), "layer": layer,
        "pool": repr(options.settings), "crops": bool(options.crops), "margin": int(options.margin),
        "root": os.fsencode(str(root)).hex(),
    }
    model = Path(str(options.extractor))
    if model.is_file():  # a user's model file: retraining it changes every embedding
        fingerprint["model"] = _file_stamp(model)
    return fingerprint


def _file_stamp(path) -> list:
    if hasattr(path, "stamp"):  # an image on object storage: size and time from its listing
        return path.stamp
    try:
        st = os.stat(path)
    except OSError:
        return [-1, -1]  # missing: the worker reports it; the key changes once it appears
    return [st.st_size, st.st_mtime_ns]


def chunk_key(jobs, fingerprint: dict) -> str:
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode())
    for image, boxes in jobs:
        digest.update(os.fsencode(str(image)) + b"\0")
        digest.update(json.dumps([_file_stamp(image)] + [[*b.corners(), b.label] for b in boxes]).encode())
    return digest.hexdigest()[:24]


def plan_chunks(jobs, batch_size: int, fingerprint: dict) -> list[Chunk]:
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    chunks = []
    for index, start in enumerate(range(0, len(jobs), batch_size)):
        part = list(jobs[start:start + batch_size])
        chunks.append(Chunk(index, chunk_key(part, fingerprint), part))
    return chunks
