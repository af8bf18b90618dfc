"""`roiscope export IMAGES --annotations PATH --out DIR [options]` (imports no Qt)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.formats import FORMATS, labelme, read_annotations
from app.formats.common import AnnotationError
from app.images import is_image, list_images


def _size(text):
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"--size must look like 7x7 or 7, got {text!r}")
    return tuple(parts)


def parser():
    p = argparse.ArgumentParser(prog="roiscope export", description="Export region crops and pooled embeddings headless.")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--annotations", help="annotation file or folder in any supported format (default: labelme sidecars next to the images)")
    p.add_argument("--annotation-format", choices=FORMATS, help="skip detection")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=("parquet", "npz"), default="parquet")
    p.add_argument("--crops", action="store_true", help="also write PNG crops")
    p.add_argument("--margin", type=int, default=0, help="pixels of context around each crop")
    p.add_argument("--extractor", default="filters", help="filters, pixels, a Keras Application name, or a .keras/.h5 model file")
    p.add_argument("--layer", default=None)
    p.add_argument("--op", choices=("roi_pool", "roi_align"), default="roi_align")
    p.add_argument("--size", type=_size, default=(7, 7), help="output size HxW (default 7x7)")
    p.add_argument("--sampling-ratio", type=int, default=-1)
    _add_ray_arguments(p)
    return p


def _add_ray_arguments(p):
    ray = p.add_argument_group("Ray Data engine (optional extra roiscope[ray])")
    ray.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local (default): this process; ray: a Ray Data pipeline writing DIR/embeddings/part-*.parquet")
    ray.add_argument("--address", help="Ray cluster to join (e.g. auto, ray://head:10001); default: a local Ray instance")
    ray.add_argument("--workers", type=int, help="extraction actors (default: autoscale up to the cluster's CPUs or GPUs)")
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per extraction actor (default 0)")
    ray.add_argument("--batch-size", type=int, default=16, help="images per Ray batch and per Parquet part (default 16)")


def _run_ray(args, jobs, options, root, progress):
    from app.export_ray import RayOptions, export_ray

    ray_options = RayOptions(args.address, args.workers, args.gpus_per_worker, args.batch_size)
    return export_ray(jobs, options, root, ray_options, progress=progress)


def collect_jobs(args):
    """(jobs, images_root, problems): the images and their boxes."""
    images = list_images(args.images)
    problems = [f"{p}: not an image or folder" for p in map(Path, args.images) if not p.exists() or (p.is_file() and not is_image(p))]
    dirs = [Path(p) for p in args.images if Path(p).is_dir()]
    root = dirs[0] if len(dirs) == 1 else (images[0].parent if images else Path("."))
    boxes = {}
    if args.annotations:
        result = read_annotations(args.annotations, images, root, args.annotation_format)
        problems += result.errors
        boxes = result.boxes
    else:
        for image in images:
            sidecar = labelme.sidecar_path(image)
            if sidecar.exists():
                try:
                    boxes[image] = labelme.read(sidecar).boxes
                except AnnotationError as exc:
                    problems.append(str(exc))
    return [(image, boxes.get(image, [])) for image in images], root, problems


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from tqdm import tqdm

    from app.export import ExportOptions, export

    jobs, root, problems = collect_jobs(args)
    try:
        options = ExportOptions(args.out, args.format, args.crops, args.margin, args.extractor, args.layer,
                                args.op, args.size, args.sampling_ratio)
        progress = lambda it: tqdm(it, desc="export", unit="image", disable=None, file=sys.stderr)  # noqa: E731
        if args.engine == "ray":
            summary = _run_ray(args, jobs, options, root, progress)
        else:
            summary = export(jobs, options, root, progress=progress)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"roiscope export: {exc}", file=sys.stderr)
        return 1
    summary.failures = problems + summary.failures
    print(summary.text())
    return 1 if summary.failures else 0
