"""`roiscope suspects EMBEDDINGS --k 10 --out suspects.csv`: the ranked label suspects as CSV
(image, region_id, label, suggested_label, score; most suspect first). Headless: imports no Qt."""
from __future__ import annotations

import argparse
import sys

from app.regionmap.sources import load_table, settings_args


def parser():
    p = argparse.ArgumentParser(prog="roiscope suspects", description="Rank regions whose nearest neighbours carry another label (CSV, most suspect first).")
    p.add_argument("embeddings", help="embeddings.parquet from roiscope export, a folder of Parquet files, or a folder of images with labelme boxes")
    p.add_argument("--k", type=int, default=10, help="neighbours that vote (default 10)")
    p.add_argument("--weighted", action="store_true", help="weight each neighbour's vote by its cosine similarity")
    p.add_argument("--exact", action="store_true",
                   help="vote on exact neighbours in all dimensions even for large tables (slower; see README)")
    p.add_argument("--out", required=True, help="CSV to write: image, region_id, label, suggested_label, score")
    settings_args(p)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.k < 1:
        print(f"roiscope suspects: --k must be at least 1, got {args.k}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from app.regionmap.suspects import find_suspects, write_suspects_csv

    try:
        table, problems = load_table(args.embeddings, args)
        if len(table) < 2:
            raise ValueError(f"{args.embeddings}: {len(table)} region(s); suspects need at least 2")
        with tqdm(total=len(table), desc="neighbours", unit="region", disable=None, file=sys.stderr) as bar:
            suspects = find_suspects(table, args.k, args.weighted, exact=True if args.exact else None, progress=lambda done, total: bar.update(done - bar.n))
        write_suspects_csv(args.out, table, suspects)
    except (ValueError, OSError) as exc:
        print(f"roiscope suspects: {exc}", file=sys.stderr)
        return 1
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    flagged = int((suspects.score > 0.5).sum())
    print(f"wrote {len(table)} regions to {args.out} ({flagged} with most neighbours labelled otherwise)")
    return 1 if problems else 0
