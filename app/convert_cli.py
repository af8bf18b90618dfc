"""`roiscope convert ANNOTATIONS --images IMAGES --to FORMAT --out DIR` (imports no Qt): read a
dataset in any supported layout and write it in another, headless. Prints the import summary and
every problem; exit status 1 if there was any, else 0 (as `roiscope export`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.atomic import atomic_write_bytes
from app.formats import FORMATS, labelme, read_annotations, write_annotations
from app.formats.common import printable
from app.images import is_image

TABLE_FILES = {"coco": "annotations.json", "csv": "annotations.csv"}


def parser():
    p = argparse.ArgumentParser(prog="roiscope convert",
                                description="Convert annotations between labelme, Pascal VOC, YOLO, COCO and CSV.")
    p.add_argument("annotations", help="annotation file or dataset root folder (data.yaml, COCO file, Annotations/, labels/ ...)")
    p.add_argument("--images", nargs="+", help="image files or folders, searched recursively (default: under ANNOTATIONS)")
    p.add_argument("--to", required=True, choices=FORMATS, help="format to write")
    p.add_argument("--out", required=True, help="output folder (COCO and CSV are written as one file in it)")
    p.add_argument("--from", dest="fmt", choices=FORMATS, help="read only this format (default: detect)")
    p.add_argument("--overwrite", action="store_true", help="replace files that already exist in --out")
    return p


def collect_images(paths):
    """(images, root): image files under ``paths`` (folders recursively) and the folder names
    inside annotations are relative to."""
    images, problems = [], []
    for p in map(Path, paths):
        if p.is_dir():
            images += sorted(q for q in p.rglob("*") if q.is_file() and is_image(q))
        elif p.is_file() and is_image(p):
            images.append(p)
        else:
            problems.append(f"{printable(p)}: not an image or folder")
    dirs = [Path(p) for p in paths if Path(p).is_dir()]
    root = dirs[0] if len(dirs) == 1 else (images[0].parent if images else None)
    return images, root, problems


def _extract_embedded(result, out, overwrite, problems):
    """Images that exist only as labelme ``imageData`` are written into ``out``, so the converted
    annotations point at a real file. -> {original path: extracted path}."""
    moved = {}
    for image, source in result.embedded.items():
        dest = out / image.name
        try:
            data = labelme.embedded_image(source)
            if dest.exists() and not overwrite:
                raise FileExistsError(f"{printable(dest)} exists (use --overwrite)")
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(dest, data)
        except (OSError, ValueError) as exc:
            problems.append(f"{printable(source)}: cannot extract its embedded image ({exc})")
            continue
        moved[image] = dest
        print(f"Extracted the image embedded in {printable(source)} to {printable(dest)}")
    return moved


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    ann = Path(args.annotations)
    image_args = args.images or [str(ann if ann.is_dir() else ann.parent)]
    images, root, problems = collect_images(image_args)
    result = read_annotations(ann, images, root, args.fmt)
    print(result.summary_text())
    problems += result.errors
    out = Path(args.out)
    moved = _extract_embedded(result, out, args.overwrite, problems)
    entries = [(moved.get(img, img), boxes, result.sizes.get(img)) for img, boxes in result.boxes.items()]
    target = out / TABLE_FILES[args.to] if args.to in TABLE_FILES else out
    written = []
    if entries:
        try:
            written = write_annotations(args.to, target, entries, root, overwrite=args.overwrite, like=result, problems=problems)
        except (OSError, ValueError) as exc:  # FileExistsError included: nothing was written
            problems.append(f"{printable(target)}: {exc}")
    print(f"Wrote {len(written)} file(s) in {args.to} format to {printable(out)}")
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
    return 1 if problems else 0
