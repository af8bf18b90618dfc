"""Export benchmark: 100 generated 1024x768 images with 100 boxes each, filters extractor; and
what reading an image costs now that its header is read first (pixel limit, orientation, pages),
against a bare OpenCV decode timed in the same run."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from app.export import ExportOptions, export
from app.images import read_image
from app.regions import Box
from tests.bench.memory import peak_rss_during


def synthetic_jobs(folder: Path, n_images: int, n_boxes: int, size=(768, 1024), corner=(900, 630), suffix=".png"):
    """Blurred-noise images of ``size`` (h, w) with ``n_boxes`` boxes of 16-200 px whose top-left
    corners fall in ``[0, corner)``: the export benchmarks' data, seeded."""
    rng = np.random.default_rng(0)
    jobs = []
    for i in range(n_images):
        img = cv2.GaussianBlur(rng.integers(0, 255, (*size, 3), dtype=np.uint8), (0, 0), 2)
        path = folder / f"img_{i:03d}{suffix}"
        cv2.imwrite(str(path), img)
        xy = rng.uniform(0, 1, size=(n_boxes, 2)) * corner
        wh = rng.uniform(16, 200, size=(n_boxes, 2))
        jobs.append((path, [Box(x, y, x + w, y + h, "thing") for (x, y), (w, h) in zip(xy, wh)]))
    return jobs


def run(n_images=100, n_boxes=100):
    tmp = Path(tempfile.mkdtemp())
    jobs = synthetic_jobs(tmp, n_images, n_boxes)
    summary, delta, peak = peak_rss_during(lambda: export(jobs, ExportOptions(tmp / "out", crops=False)), interval=0.005)
    total = sum(summary.stages.values())
    print("\nExport benchmark (100 images 1024x768 x 100 boxes, filters stride 4, RoIAlign 7x7, Parquet)")
    print(f"  {summary.regions / summary.seconds:8.0f} regions/s   {summary.images / summary.seconds:6.2f} images/s   "
          f"({summary.seconds:.1f} s in all)")
    print("  time shares: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in summary.stages.items()))
    print(f"  peak memory above start: {delta / 2**20:.0f} MiB (process peak {peak / 2**20:.0f} MiB); "
          f"output {(tmp / 'out' / 'embeddings.parquet').stat().st_size / 2**20:.0f} MiB")
    read_overhead([path for path, _ in jobs[:20]])


def read_overhead(paths, repeats=5):
    """Per image: read_image (header probe + decode + RGB) vs cv2.imread + BGR->RGB, timed in
    alternation so that load from other processes hits both alike; medians reported."""
    def bare(p):
        return cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)

    times = {bare: [], read_image: []}
    for _ in range(repeats):
        for p in paths:
            for fn in times:
                t0 = time.perf_counter()
                fn(p)
                times[fn].append(time.perf_counter() - t0)
    base, ours = (float(np.median(times[fn])) for fn in (bare, read_image))
    print(f"  read_image {1e3 * ours:.2f} ms/image vs bare OpenCV decode {1e3 * base:.2f} ms/image "
          f"(ratio {ours / base:.2f}; medians of {len(times[bare])} alternating reads)")
