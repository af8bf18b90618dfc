"""`roiscope map PATH`: the region map window on a folder of images (embeddings computed with the
given settings, cached) or on an export's `embeddings.parquet` / a folder of Parquet files."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.regionmap.sources import settings_args


def parser():
    p = argparse.ArgumentParser(prog="roiscope map", description="Open the region map on a folder of images or on an export's Parquet file(s).")
    p.add_argument("path", help="folder of images (labelme boxes), embeddings.parquet, or a folder of Parquet files")
    p.add_argument("--projection", choices=("pca", "umap"), default="pca")
    settings_args(p)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if not Path(args.path).exists():  # say so here, not in a window that opens for nothing
        print(f"roiscope map: {args.path}: no such file or folder", file=sys.stderr)
        return 1
    from app.gui.map_window import run_map_window

    return run_map_window(args)
