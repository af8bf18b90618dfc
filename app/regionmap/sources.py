"""Where a map's regions come from: an export's Parquet file(s), or a folder of images whose
embeddings are computed (or taken from the cache). Shared by `roiscope map` and `roiscope suspects`."""
from __future__ import annotations

from pathlib import Path

from app.export_cli import _size
from app.images import list_images


def settings_args(p):
    p.add_argument("--extractor", default="filters", help="for a folder of images: filters, pixels, a Keras Application name, or a .keras/.h5 model file")
    p.add_argument("--layer", default=None, help="default: the extractor's default layer (filters: 'stride 4')")
    p.add_argument("--op", choices=("roi_pool", "roi_align"), default="roi_align")
    p.add_argument("--size", type=_size, default=(7, 7), help="output size HxW (default 7x7)")
    p.add_argument("--sampling-ratio", type=int, default=-1)


def is_parquet_source(path) -> bool:
    """A .parquet file, or a folder holding Parquet files and no images (a folder of images with
    an export inside it is still a folder of images)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return True
    return path.is_dir() and not list_images([path]) and any(path.rglob("*.parquet"))


def load_table(path, args, progress=None, cancelled=None):
    """(RegionTable, problems) from a Parquet export or a folder of images (embeddings computed
    or taken from the cache)."""
    from app.regionmap.compute import MapSettings, compute_table, folder_jobs
    from app.regionmap.parquet_source import read_parquet_table

    if is_parquet_source(path):
        return read_parquet_table(path), []
    if not Path(path).exists():
        raise ValueError(f"{path}: no such file or folder")
    jobs, problems = folder_jobs([path])
    if not jobs:
        raise ValueError(f"{path}: no images and no .parquet files here")
    settings = MapSettings(args.extractor, args.layer, args.op, args.size, args.sampling_ratio)
    result = compute_table(jobs, settings, progress=progress, cancelled=cancelled)
    return result.table, problems + result.problems


