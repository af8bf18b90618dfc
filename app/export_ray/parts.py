"""The Ray export's output (Qt-free, Ray-free): one Parquet part per chunk in ``DIR/embeddings/``,
and the manifests compacted from the parts at the end.

A part is written under a hidden temporary name and renamed, so readers of the dataset
(``pyarrow.dataset`` and pandas skip names starting with ``.``) never see a half-written file,
and the rename is the chunk's commit: a part that exists is complete. Its footer carries the
chunk's receipt (images, failures, manifest rows, seconds per stage), so a re-run that skips the
chunk still reports and lists everything, and the manifests are rebuilt from the parts alone.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from app.atomic import atomic_file, atomic_write_bytes
from app.export import EMBEDDING_SCHEMA, MANIFEST_COLUMNS

RECEIPT_KEY = b"roiscope.chunk"
EMBEDDINGS_DIR = "embeddings"


def write_part(path: Path, tables: list, receipt: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables(tables) if tables else EMBEDDING_SCHEMA.empty_table()
    table = table.replace_schema_metadata({RECEIPT_KEY: json.dumps(receipt).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_receipt(path: Path) -> dict:
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    if RECEIPT_KEY not in metadata:
        raise ValueError(f"{path}: not a part written by roiscope's Ray export (no receipt)")
    return json.loads(metadata[RECEIPT_KEY])


def remove_leftovers(out: Path) -> None:
    """Temporary files of a run that was killed while writing (not of a running one: the caller
    holds the output folder's lock)."""
    for stale in [*(out / EMBEDDINGS_DIR).glob(".part-*.tmp"), *out.glob(".*.tmp"), *(out / "crops").glob(".*.tmp")]:
        stale.unlink(missing_ok=True)


def remove_stale_parts(emb_dir: Path, keep: set) -> list:
    """Parts this run's plan does not name (older settings, edited images or boxes): called once
    every planned part exists, so an interrupted run never loses finished work."""
    removed = []
    for part in emb_dir.glob("part-*.parquet"):
        if part.name not in keep:
            part.unlink(missing_ok=True)
            removed.append(part.name)
    return removed


def _atomic_text(path: Path):
    """A text file streamed to a temporary name, renamed when the block ends without error.
    backslashreplace: a non-UTF-8 name is kept as the local export keeps it (\\udcNN)."""
    return atomic_file(path, "w", encoding="utf-8", errors="backslashreplace", newline="")


def compact_manifests(out: Path, receipts) -> None:
    """``manifest.csv`` and ``manifest.json`` as the local export writes them, streamed from the
    parts' receipts (in input order) so the driver holds one chunk's rows at a time."""
    with _atomic_text(out / "manifest.csv") as csv_file, _atomic_text(out / "manifest.json") as json_file:
        writer = csv.writer(csv_file, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        first = True
        for receipt in receipts:
            for row in receipt["manifest"]:
                writer.writerow(row)
                text = json.dumps(dict(zip(MANIFEST_COLUMNS, row)), indent=1, ensure_ascii=False)
                # the same text as json.dumps(all_rows, indent=1): each element one level in
                json_file.write(("[\n" if first else ",\n") + "\n".join(" " + line for line in text.splitlines()))
                first = False
        json_file.write("[]" if first else "\n]")
