"""A RegionTable from ``roiscope export``'s ``embeddings.parquet`` (or a folder of Parquet files,
e.g. a Ray export's parts). All files must share one setting (extractor, layer, op, output size):
points of different embeddings on one map would mean nothing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.regionmap.table import RegionTable

SETTING_COLUMNS = ("extractor", "layer", "op", "output_size")
COLUMNS = ("image", "region_id", "label", "x1", "y1", "x2", "y2", "embedding") + SETTING_COLUMNS


def parquet_files(path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
        if files:
            return files
        raise ValueError(f"{path}: no .parquet files in this folder")
    raise ValueError(f"{path}: no such file or folder")


def _embeddings(column, path) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = column.combine_chunks()
    if col.null_count:
        raise ValueError(f"{path}: column 'embedding' has {col.null_count} empty row(s)")
    if len(col) == 0:
        return np.zeros((0, 0), np.float32)
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if lengths.min() != lengths.max():
        raise ValueError(f"{path}: column 'embedding' has rows of different lengths "
                         f"({lengths.min()} to {lengths.max()})")
    values = col.flatten() if not isinstance(col, pa.FixedSizeListArray) else col.values
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(col), int(lengths[0]))


def read_one(path) -> RegionTable:
    import pyarrow.parquet as pq
    from pyarrow.lib import ArrowNotImplementedError

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (expected roiscope export's schema)")
    emb = _embeddings(table.column("embedding"), path)
    settings = {}
    for name in SETTING_COLUMNS:
        try:
            values = table.column(name).unique().to_pylist()  # fast; lists may not support it
        except (NotImplementedError, ArrowNotImplementedError):
            values = table.column(name).to_pylist()
        distinct = sorted({json.dumps(v) for v in values})
        if len(distinct) > 1:
            raise ValueError(f"{path}: column '{name}' mixes {', '.join(distinct)}; one map needs one setting")
        settings[name] = values[0] if values else None
    col = lambda name: table.column(name).to_numpy(zero_copy_only=False)  # noqa: E731
    corners = np.stack([col(c) for c in ("x1", "y1", "x2", "y2")], axis=1) if len(table) else np.zeros((0, 4))
    return RegionTable(col("image").astype(object), col("region_id"), col("label").astype(object), corners, emb, settings)


def read_parquet_table(path) -> RegionTable:
    """Every row of the Parquet file(s) at ``path``; ``ValueError`` naming the file on bad input."""
    tables = [(p, read_one(p)) for p in parquet_files(path)]
    tables = [(p, t) for p, t in tables if len(t)]
    if not tables:
        return RegionTable.empty()
    first_path, first = tables[0]
    for p, t in tables[1:]:
        if t.settings != first.settings:
            raise ValueError(f"{p}: embeddings made with {t.settings}, but {first_path} with {first.settings}; "
                             "one map needs one setting")
    return RegionTable.concat([t for _, t in tables])
