"""The embeddings file: one row per region, as Parquet (streamed, a row group per image) or .npz.

The Parquet schema is defined once, here; the local export and the Ray engine write it.
Everything is written under a temporary name; ``finish`` hands that name back for the caller to
commit with the other outputs, ``abort`` removes it.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.atomic import open_temp, remove_quietly

PARTIAL = ".partial"
TEXT_COLUMNS = ("image", "label", "extractor", "layer", "op")
BOX_COLUMNS = ("x1", "y1", "x2", "y2")
EMBEDDING_SCHEMA = pa.schema([
    ("image", pa.string()), ("region_id", pa.int32()), ("label", pa.string()),
    *[(k, pa.float64()) for k in BOX_COLUMNS],
    ("extractor", pa.string()), ("layer", pa.string()), ("op", pa.string()),
    ("output_size", pa.list_(pa.int32())), ("embedding", pa.list_(pa.float32())), ("shape", pa.list_(pa.int32())),
])


def _lists(values: np.ndarray, dtype) -> pa.Array:
    """(n, d) array -> list<dtype> column without a Python loop."""
    n, d = values.shape
    flat = pa.array(values.reshape(-1), dtype)
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)), flat)


def embedding_table(columns: dict) -> pa.Table:
    """One image's rows. ``columns``: per-row arrays for the scalar columns, ``embedding``
    ``(n, d)`` float32, and ``output_size`` ``(2,)`` / ``shape`` ``(3,)`` shared by all rows."""
    emb = np.asarray(columns["embedding"], np.float32)
    n = emb.shape[0]
    arrays = {k: columns[k] for k in EMBEDDING_SCHEMA.names if k not in ("output_size", "embedding", "shape")}
    arrays["output_size"] = _lists(np.tile(np.asarray(columns["output_size"], np.int32), (n, 1)), pa.int32())
    arrays["embedding"] = _lists(emb.reshape(n, -1), pa.float32())
    arrays["shape"] = _lists(np.tile(np.asarray(columns["shape"], np.int32), (n, 1)), pa.int32())
    return pa.table(arrays, schema=EMBEDDING_SCHEMA)


class EmbeddingWriter:
    """Parquet: a row group per image through a ParquetWriter (memory stays flat).
    npz: rows collected, written once at the end."""

    def __init__(self, path, fmt):
        self.path, self.fmt = Path(path), fmt
        self.tmp = self.path.with_name(self.path.name + PARTIAL)
        self.rows, self.writer = [], None

    def add(self, columns: dict, table: pa.Table | None = None):
        """``table``: the Parquet rows when the caller built them already (``embedding_table``)."""
        if self.fmt == "npz":
            self.rows.append(columns)
            return
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, EMBEDDING_SCHEMA)
        self.writer.write_table(table if table is not None else embedding_table(columns))

    def finish(self) -> Path:
        """Complete the file under its temporary name and return that name (not yet committed)."""
        if self.fmt == "parquet":
            if self.writer is None:
                pq.write_table(EMBEDDING_SCHEMA.empty_table(), self.tmp)
            else:
                self.writer.close()
                self.writer = None
            return self.tmp
        buf = io.BytesIO()
        np.savez(buf, **self._npz_arrays())
        fd, self.tmp = open_temp(self.path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(buf.getbuffer())
        return self.tmp

    def _npz_arrays(self) -> dict:
        keys = ("image", "region_id", "label", *BOX_COLUMNS, "extractor", "layer", "op")
        data = {k: np.concatenate([r[k] for r in self.rows]) if self.rows else np.array([]) for k in keys}
        if self.rows:
            data["embedding"] = np.concatenate([r["embedding"] for r in self.rows]).astype(np.float32)
            data["shape"] = np.array([r["shape"] for r in self.rows for _ in range(len(r["image"]))], np.int32)
            data["output_size"] = np.array([r["output_size"] for r in self.rows for _ in range(len(r["image"]))], np.int32)
        return data

    def abort(self):
        """Drop everything written so far (after a failure)."""
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # the disk that failed may fail again; the file goes anyway
                pass
            self.writer = None
        remove_quietly(self.tmp)


_EmbeddingWriter = EmbeddingWriter  # the name other modules imported before
