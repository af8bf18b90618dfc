"""`roiscope export IMAGES --annotations PATH --out DIR [options]` (imports no Qt)."""
from __future__ import annotations

import argparse
import mimetypes
import sys
from pathlib import Path

from app.formats import FORMATS, labelme, read_annotations
from app.images import IMAGE_SUFFIXES, is_image, list_images
from app.problems import describe, reason, safe_text

SUPPORTED = ", ".join(sorted(IMAGE_SUFFIXES))


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
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's start-up log and, with --engine ray, Ray's own notices")
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


def _run_ray(args, jobs, options, root, progress, filesystem):
    from app.export_ray import RayOptions, export_ray
    from app.export_ray.remote import is_uri

    if is_uri(args.out):
        raise ValueError(f"--out {args.out}: the output must be a local or shared folder, not a URI")
    ray_options = RayOptions(args.address, args.workers, args.gpus_per_worker, args.batch_size, args.verbose)
    return export_ray(jobs, options, root, ray_options, progress=progress, filesystem=filesystem)


def _collect(args):
    """(jobs, root, problems, filesystem): inputs given as URIs (object storage) go to the Ray
    engine's reader, which lists them through pyarrow; local paths to ``collect_jobs``."""
    from app.export_ray.remote import collect_remote_jobs, is_uri

    if any(is_uri(p) for p in [*args.images, args.annotations or ""]):
        if args.engine != "ray":
            uris = [p for p in [*args.images, args.annotations] if p and is_uri(p)]
            return [], Path("."), [f"{u}: inputs given as URIs need --engine ray" for u in uris], None
        remote = collect_remote_jobs(args.images, args.annotations, args.annotation_format)
        return remote.jobs, remote.root, remote.problems, remote.filesystem
    return (*collect_jobs(args), None)


def collect_jobs(args):
    """(jobs, images_root, problems): the images and their boxes. Nothing here stops the run:
    a folder, an annotation file or a sidecar that fails in any way is one named problem."""
    images, problems = [], []
    for p in map(Path, args.images):
        try:
            if not p.exists() or (p.is_file() and not is_image(p)):
                problems.append(f"{p}: not an image or folder" + (f" (RoIScope reads {SUPPORTED})" if p.is_file() else ""))
            images += list_images([p])
        except Exception as exc:  # an unreadable folder
            problems.append(describe(p, exc))
    dirs = [Path(p) for p in args.images if Path(p).is_dir()]
    root = dirs[0] if len(dirs) == 1 else (images[0].parent if images else Path("."))
    boxes = {}
    if args.annotations:
        try:
            result = read_annotations(args.annotations, images, root, args.annotation_format)
        except Exception as exc:  # the readers name their problems; anything else still must not stop the run
            problems.append(describe(args.annotations, exc))
        else:
            problems += [safe_text(e) for e in result.errors]
            boxes = result.boxes
            print(safe_text(result.summary_text()), file=sys.stderr)  # every import ends with its per-file summary
    else:
        for image in images:
            sidecar = labelme.sidecar_path(image)
            try:
                if sidecar.exists():
                    boxes[image] = labelme.read(sidecar, derived=True).boxes  # as the window reads them
            except Exception as exc:
                problems.append(describe(sidecar, exc))
        problems += unreadable_annotated(dirs, images)
    return [(image, boxes.get(image, [])) for image in images], root, problems


def unreadable_annotated(dirs, images) -> list[str]:
    """A labelme sidecar whose image is in a format RoIScope cannot read (``photo.gif`` beside
    ``photo.json``) would be ignored without a word: name each such image."""
    listed = {labelme.sidecar_path(image) for image in images}
    problems = []
    for folder in dirs:
        try:
            files = [q for q in folder.iterdir() if q.is_file()]
        except OSError:
            continue  # already reported by collect_jobs
        stems = {}
        for q in files:
            kind = mimetypes.guess_type(q.name)[0] or ""
            if kind.startswith("image/") and not is_image(q):
                stems.setdefault(q.stem, []).append(q)
        for sidecar in sorted(q for q in files if q.suffix.lower() == ".json" and q not in listed):
            for image in stems.get(sidecar.stem, []):
                problems.append(safe_text(f"{image}: annotated by {sidecar.name}, but RoIScope cannot read "
                                          f"{image.suffix or 'this'} images ({SUPPORTED}); its boxes were not exported"))
    return problems


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from tqdm import tqdm

    from app.tf_quiet import import_tensorflow

    import_tensorflow(args.verbose)
    from app.export import ExportOptions, export
    from app.pooling import PoolSettings

    jobs, root, problems, filesystem = _collect(args)
    try:
        options = ExportOptions(args.out, args.format, args.crops, args.margin, args.extractor, args.layer,
                                PoolSettings(args.op, args.size, args.sampling_ratio))
        progress = lambda it: tqdm(it, desc="export", unit="image", disable=None, file=sys.stderr)  # noqa: E731
        if args.engine == "ray":
            summary = _run_ray(args, jobs, options, root, progress, filesystem)
        else:
            summary = export(jobs, options, root, progress=progress)
    except Exception as exc:  # bad options, output in use, disk full: one line, no traceback
        print(f"roiscope export: {describe(args.out, exc) if isinstance(exc, OSError) else safe_text(reason(exc))}", file=sys.stderr)
        return 1
    summary.failures = problems + summary.failures
    print(summary.text())
    return 1 if summary.failures else 0
