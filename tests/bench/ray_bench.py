"""Ray engine benchmark: the local export and `--engine ray` on the same 200 generated 640x480
images (COCO's typical size) with 20 boxes each, filters extractor, in the same run; then COCO
train2017 projected on paper from the measured per-worker throughput and stage shares."""
from __future__ import annotations

import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np

from app.export import ExportOptions, export
from tests.bench.export_bench import synthetic_jobs
from tests.bench.memory import peak_rss_during
from tests.local_s3 import local_s3

COCO_IMAGES, COCO_BOXES = 118_287, 860_001  # train2017


def _dataset(folder: Path, n_images: int, n_boxes: int):
    return synthetic_jobs(folder, n_images, n_boxes, size=(480, 640), corner=(560, 420), suffix=".jpg")


def _projection(one_worker, jobs):
    """COCO wall time for 1, 8 and 64 workers: the workers' per-image and per-region seconds
    (measured with one worker) divided among them, plus the driver's serial part (not divided),
    plus the pool's start (actors importing TensorFlow, first compile: once per run)."""
    s = one_worker
    per_image = (s.stages["read"] + s.stages["extract"]) / s.images
    per_region = (s.stages["pool"] + s.stages["write"]) / s.regions
    work = {"read": s.stages["read"] / s.images * COCO_IMAGES, "extract": s.stages["extract"] / s.images * COCO_IMAGES,
            "pool": s.stages["pool"] / s.regions * COCO_BOXES, "write": s.stages["write"] / s.regions * COCO_BOXES}
    parallel = COCO_IMAGES * per_image + COCO_BOXES * per_region
    # the driver's serial part: keys per image before, manifests per region after the pipeline
    serial = COCO_IMAGES * s.driver["plan"] / s.images + COCO_BOXES * s.driver["manifests"] / s.regions
    limiter = max(work, key=work.get)
    mean_bytes = np.mean([Path(p).stat().st_size for p, _ in jobs])
    print(f"  COCO train2017 on paper ({COCO_IMAGES} images, {COCO_BOXES} boxes; one worker = one actor on this "
          f"2-core machine, {1 / (per_image + COCO_BOXES / COCO_IMAGES * per_region):.2f} COCO images/s):")
    print("    stage shares of the workers' time: " + ", ".join(f"{k} {100 * v / parallel:.0f}%" for k, v in work.items()))
    start = s.driver["first chunk"]
    for n in (1, 8, 64):
        wall = parallel / n + serial + start
        read_rate = COCO_IMAGES * mean_bytes / wall / 2**20
        print(f"    {n:3d} workers: {wall / 3600:6.2f} h   (limited by {limiter if parallel / n > serial else 'the driver'}; "
              f"driver's serial part {serial / 60:.1f} min, pool start {start:.0f} s; storage read {read_rate:.1f} MiB/s)")


def _from_s3(tmp: Path, jobs, export_ray, RayOptions):
    """The same images read by the Ray engine from a local S3 server (moto) instead of the disk:
    the object-storage path's own cost (an HTTP round trip per image, no network latency)."""
    try:
        import moto.server  # noqa: F401 (the dev extra's local S3 server)
    except ImportError:
        return None
    from app.export_ray.remote import collect_remote_jobs

    with local_s3("bench") as server:
        s3 = server.filesystem()
        s3.create_dir("bench")
        for path, _ in jobs:
            with s3.open_output_stream(f"bench/images/{Path(path).name}") as out:
                out.write(Path(path).read_bytes())
        t0 = time.perf_counter()
        remote = collect_remote_jobs(["s3://bench/images"])
        listing = time.perf_counter() - t0
        boxes = {Path(p).name: b for p, b in jobs}
        remote_jobs = [(image, boxes[image.uri.rsplit("/", 1)[1]]) for image, _ in remote.jobs]
        summary = export_ray(remote_jobs, ExportOptions(tmp / "ray-s3"), remote.root, RayOptions(workers=1),
                             filesystem=remote.filesystem)
        return summary, listing


def run(n_images=200, n_boxes=20):
    try:
        import ray
    except ImportError:
        print("\nRay benchmark skipped: Ray is not installed (pip install -e '.[ray]')")
        return
    from app.export_ray import RayOptions, export_ray

    tmp = Path(tempfile.mkdtemp())
    jobs = _dataset(tmp, n_images, n_boxes)
    export(jobs[:2], ExportOptions(tmp / "warm-up"))  # one-time tracing/compiling, as each Ray actor's first chunk
    local = export(jobs, ExportOptions(tmp / "local"))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray_init = time.perf_counter() - t0
    try:
        half = n_images // 2
        one, delta_half, _ = peak_rss_during(
            lambda: export_ray(jobs[:half], ExportOptions(tmp / "ray1"), tmp, RayOptions(workers=1)), interval=0.01)
        both, delta_all, _ = peak_rss_during(lambda: export_ray(jobs, ExportOptions(tmp / "ray"), tmp), interval=0.01)
        on_s3 = _from_s3(tmp, jobs[:half], export_ray, RayOptions)
    finally:
        ray.shutdown()
    print(f"\nRay engine benchmark ({n_images} images 640x480 x {n_boxes} boxes, filters stride 4, RoIAlign 7x7, "
          "local Ray instance with 2 CPUs)")
    print(f"  local export: {local.regions / local.seconds:7.0f} regions/s ({local.seconds:.1f} s)")
    print(f"  --engine ray: {both.regions / both.seconds:7.0f} regions/s ({both.seconds:.1f} s; + ray.init {ray_init:.1f} s "
          f"once per process) = {both.seconds / local.seconds:.2f}x the local export's time")
    print("    driver: " + ", ".join(f"{k} {v:.1f} s" for k, v in both.driver.items()))
    total = sum(both.stages.values())
    print("    workers' time: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in both.stages.items())
          + f" of {total:.1f} worker-seconds")
    print(f"  one worker: {one.regions / sum(one.stages.values()):.0f} regions/s of worker time "
          f"({one.images / sum(one.stages.values()):.2f} images/s)")
    print(f"  driver peak memory above start: {delta_half / 2**20:.0f} MiB for {half} images (first run), "
          f"{delta_all / 2**20:.0f} MiB for {n_images} (results stream; it holds the plan, not the rows)")
    plan_bytes = len(pickle.dumps(jobs, protocol=5)) / sum(len(b) for _, b in jobs)
    print(f"  the plan (paths and boxes, pickled into the object store): {plan_bytes:.0f} bytes per box, "
          f"{plan_bytes * COCO_BOXES / 2**20:.0f} MiB for COCO; beyond it the driver holds a key per chunk and the results in flight")
    if on_s3 is None:
        print("  images on S3: skipped (moto is in the dev extra)")
    else:
        s3, listing = on_s3
        print(f"  the same {half} images on a local S3 server (moto), one worker: read {1e3 * s3.stages['read'] / s3.images:.1f} ms "
              f"per image vs {1e3 * one.stages['read'] / one.images:.1f} ms from disk "
              f"(= {s3.stages['read'] / one.stages['read']:.2f}x); listing on the driver {listing:.2f} s; "
              f"{s3.regions / sum(s3.stages.values()):.0f} regions/s of worker time")
    _projection(one, jobs[:half])
