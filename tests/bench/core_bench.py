"""roi_core benchmark: median times and ratios against baselines timed in the same run."""
from __future__ import annotations

import json
import resource
import statistics
import sys
import time

import numpy as np
import tensorflow as tf

from roi_core import ps_roi_align, ps_roi_pool, roi_align, roi_pool
from tests.bench.fresh import json_from_fresh_process
from tests.bench.memory import peak_rss_during
from tests.bench.tutorial_baseline import tutorial_roi_pool

WORKLOADS = {
    "a: VGG16 conv5 1x38x50x512, 300 RoIs": (38, 50, 512, 300, 16),
    "b: 1x64x64x256, 1000 RoIs": (64, 64, 256, 1000, 16),
}


def varied_boxes(rng, k, h, w, stride, n_img=1):
    """RoIs of varied size (log-uniform side from 1 cell to the whole map) inside the map, in image
    pixels, spread over ``n_img`` images."""
    side = np.exp(rng.uniform(0, np.log(min(h, w)), size=(k, 2)))
    cx, cy = rng.uniform(0, w, k), rng.uniform(0, h, k)
    x1, x2 = np.clip(cx - side[:, 0] / 2, 0, w), np.clip(cx + side[:, 0] / 2, 0, w)
    y1, y2 = np.clip(cy - side[:, 1] / 2, 0, h), np.clip(cy + side[:, 1] / 2, 0, h)
    idx = rng.integers(0, n_img, k)
    return np.stack([idx, x1 * stride, y1 * stride, x2 * stride, y2 * stride], 1).astype(np.float32)


def median_ms(fn, *args, repeats=7):
    np.asarray(fn(*args))  # trace / compile outside the timing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def peak_rss_delta_mb(fn, *args):
    """Peak resident memory above the level before the call, in MiB (after one warm-up call)."""
    np.asarray(fn(*args))
    _, delta, _ = peak_rss_during(lambda: np.asarray(fn(*args)))
    return delta / 2**20


def workload(name):
    """Features, boxes (image pixels) and spatial scale of one workload, the same in every run."""
    h, w, c, k, stride = WORKLOADS[name]
    rng = np.random.default_rng(list(WORKLOADS).index(name))
    feats = tf.constant(rng.normal(size=(1, h, w, c)).astype(np.float32))
    return feats, tf.constant(varied_boxes(rng, k, h, w, stride)), 1.0 / stride


def output_write_floor(feats, k):
    """The least any RoI op must do: read features and write ``(K, 7, 7, C)`` outputs. A
    compiled gather of fixed rows, timed as the floor the ops are compared with."""
    flat = tf.reshape(feats, [-1, feats.shape[-1]])
    rows = tf.constant(np.random.default_rng(0).integers(0, flat.shape[0], size=(k, 7, 7)), tf.int32)
    return tf.function(lambda f: tf.gather(tf.reshape(f, [-1, f.shape[-1]]), rows), jit_compile=True)


def faults_per_call(fn, *args, repeats=5):
    """Minor page faults per call (after a warm-up call): fresh pages the allocator handed out,
    each zeroed by the kernel. A buffer above glibc's mmap threshold (at most 32 MiB) is mapped
    and unmapped on every call, so a 50 MB output faults in every call while a 30 MB one reuses
    warm heap pages; the ops' intermediate buffers fault the same way."""
    np.asarray(fn(*args))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        np.asarray(fn(*args))
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / repeats


def warm_buffer_ms(name):
    """The floor and the ops timed again in a fresh process whose TensorFlow CPU allocator keeps
    freed buffers (TF_CPU_ALLOCATOR_USE_BFC): no call pays for fresh pages, so the ratios there
    compare the computation alone. The first floor is kept as it is (it is what a caller sees
    with the default allocator); this second floor is reported beside it."""
    return json_from_fresh_process("tests.bench.core_bench", "--warm", name, TF_CPU_ALLOCATOR_USE_BFC="true")


def _warm_probe(name):
    feats, boxes, scale = workload(name)
    fns = op_functions(scale)
    out = {"floor": median_ms(output_write_floor(feats, boxes.shape[0]), feats)}
    out.update({op: median_ms(fn, feats, boxes) for op, fn in fns.items()})
    return out


def first_call_latency_ms():
    """Eager latency in a fresh process: the first pooled grid (one box), a new image size, and
    the n-th box on the same map, as the GUI meets them."""
    return json_from_fresh_process("tests.bench.core_bench", "--latency")


def _latency_probe():
    def timed(fn):
        start = time.perf_counter()
        np.asarray(fn())
        return (time.perf_counter() - start) * 1000

    rng = np.random.default_rng(0)
    first = rng.normal(size=(1, 38, 50, 512)).astype(np.float32)
    other = rng.normal(size=(1, 45, 60, 512)).astype(np.float32)
    box = np.array([[0, 32, 48, 320, 400]], np.float32)
    out = {"first roi_pool": timed(lambda: roi_pool(first, box, 7, 1 / 16))}
    out["first roi_align"] = timed(lambda: roi_align(first, box, 7, 1 / 16))
    out["new image size"] = timed(lambda: roi_align(other, box, 7, 1 / 16))
    many = np.repeat(box, 37, axis=0)
    out["37th box"] = timed(lambda: roi_align(other, many, 7, 1 / 16))
    return out


def _pool_gradient(scale):
    """d sum(roi_pool) / d features: the backward pass a Keras fit runs."""

    def grad(f, b):
        with tf.GradientTape() as tape:
            tape.watch(f)
            total = tf.reduce_sum(roi_pool(f, b, 7, scale))
        return tape.gradient(total, f)

    return grad


def op_functions(scale):
    """Each op inside a caller's ``tf.function`` (the graph kernels) and called eagerly (a large
    eager call on the CPU takes the direct Numba loops, see roi_core/_cpu_path.py); roi_pool
    also XLA-compiled whole (``jit_compile=True``) and its gradient in a ``tf.function``."""
    eager = {
        "pool": lambda f, b: roi_pool(f, b, 7, scale),
        "align": lambda f, b: roi_align(f, b, 7, scale, -1, False),
        "align2": lambda f, b: roi_align(f, b, 7, scale, 2, False),
    }
    graphs = {op: tf.function(fn) for op, fn in eager.items()}
    graphs["pool jit"] = tf.function(eager["pool"], jit_compile=True)
    graphs["pool grad"] = tf.function(_pool_gradient(scale))
    return graphs | {f"{op} eager": fn for op, fn in eager.items()}


def position_sensitive_ms():
    """R-FCN-like PS pooling (1x38x50x(7*7*21), 300 varied RoIs, 7x7): inside tf.function (the
    graph kernels pool all channels for every bin) and eagerly (the direct loops read only each
    bin's channel group)."""
    rng = np.random.default_rng(7)
    feats = tf.constant(rng.normal(size=(1, 38, 50, 7 * 7 * 21)).astype(np.float32))
    boxes = tf.constant(varied_boxes(rng, 300, 38, 50, 16))
    ops = {"ps_roi_pool": lambda f, b: ps_roi_pool(f, b, 7, 1 / 16), "ps_roi_align": lambda f, b: ps_roi_align(f, b, 7, 1 / 16)}
    return {name: (median_ms(tf.function(fn, autograph=False), feats, boxes, repeats=3), median_ms(fn, feats, boxes, repeats=3)) for name, fn in ops.items()}


def peak_memory_mb(name):
    """Peak memory of each op above the level before the call, measured in a fresh process
    where glibc maps every buffer over 64 KiB on its own and unmaps it when freed (a fixed
    MALLOC_MMAP_THRESHOLD_): resident memory then follows the live buffers, instead of
    staying flat while the heap reuses freed pages."""
    return json_from_fresh_process("tests.bench.core_bench", name, MALLOC_MMAP_THRESHOLD_="65536")


def run():
    rows = []
    for name, (h, w, c, k, stride) in WORKLOADS.items():
        feats, boxes, scale = workload(name)
        rel = tf.constant((boxes.numpy()[:, 1:] / np.array([w, h, w, h]) / stride)[None].astype(np.float32))
        fns = op_functions(scale)
        mapfn = tf.function(lambda f, r: tutorial_roi_pool(f, r, 7, 7))

        @tf.function
        def crop(f, b):
            size = tf.cast(tf.shape(f)[1:3] - 1, tf.float32) * stride
            norm = tf.stack([b[:, 2] / size[0], b[:, 1] / size[1], b[:, 4] / size[0], b[:, 3] / size[1]], 1)
            crops = tf.image.crop_and_resize(f, norm, tf.cast(b[:, 0], tf.int32), (14, 14))
            return tf.nn.max_pool2d(crops, 2, 2, "VALID")

        t_floor = median_ms(output_write_floor(feats, k), feats)
        times = {op: median_ms(fn, feats, boxes) for op, fn in fns.items()}
        t_crop = median_ms(crop, feats, boxes)
        t_map = median_ms(mapfn, feats, rel, repeats=3)
        io_mb = (feats.numpy().nbytes + k * 49 * c * 4) / 2**20
        memory = peak_memory_mb(name)
        faults = {"floor": faults_per_call(output_write_floor(feats, k), feats)}
        faults.update({op: faults_per_call(fn, feats, boxes) for op, fn in fns.items()})
        warm = warm_buffer_ms(name)
        rows.append((name, t_floor, times, t_crop, t_map, io_mb, memory, faults, warm))

    print("\nroi_core benchmark (median of repeated calls, this machine, same run; 'eager' rows are plain")
    print("calls, which take the direct Numba loops on the CPU; the others run inside tf.function)")
    labels = {"pool": "roi_pool", "align": "roi_align", "align2": "roi_align sr=2"}
    for name, t_floor, times, t_crop, t_map, io_mb, memory, faults, warm in rows:
        print(f"\n{name}")
        print(f"  output-write floor      {t_floor:7.1f} ms   (compiled gather of K x 7 x 7 x C rows)")
        for op, ms in times.items():
            base, _, eager = op.partition(" ")
            label = f"{labels[base]} {eager}".strip()
            target = "   (target <= 1.5)" if base != "align2" and eager != "grad" else ""
            print(f"  {label:23s} {ms:7.1f} ms   / floor {ms / t_floor:5.2f}   / crop_and_resize {ms / t_crop:5.2f}{target}")
        print(f"  crop_and_resize         {t_crop:7.1f} ms   (14x14 + 2x2 max pool, baseline)")
        print(f"  tutorial map_fn         {t_map:7.1f} ms   (baseline; roi_pool speed-up {t_map / times['pool']:.1f}x, target >= 5x)")
        ratios = ", ".join(f"{op} {mb / io_mb:4.2f}" for op, mb in memory.items())
        print(f"  peak memory / (features + output): {ratios}   (target <= 1.5; features + output = {io_mb:.1f} MiB)")
        print("  page faults per call:   " + ", ".join(f"{op} {n:.0f}" for op, n in faults.items()))
        floor = warm["floor"]
        print(f"  warm-buffer floor       {floor:7.1f} ms   (same gather, allocator keeping freed buffers: no fresh pages)")
        print("  warm-buffer ratios:     " + ", ".join(f"{op} {warm[op] / floor:4.2f}" for op in times))
    print("\nPosition-sensitive pooling, R-FCN-like 1x38x50x1029, 300 RoIs, 7x7")
    for name, (graph, eager) in position_sensitive_ms().items():
        print(f"  {name:13s} tf.function {graph:7.1f} ms   eager {eager:7.1f} ms   ({graph / eager:.1f}x)")
    latency = first_call_latency_ms()
    print("\nEager latency in a fresh process (VGG16 conv5 map, 7x7; target: first grid <= 1000 ms)")
    for what, ms in latency.items():
        print(f"  {what:18s} {ms:8.1f} ms")
    return rows


if __name__ == "__main__":  # one workload's peak memory (see peak_memory_mb), warm-buffer times or the latency probe, as JSON
    if sys.argv[1] == "--latency":
        print(json.dumps(_latency_probe()))
    elif sys.argv[1] == "--warm":
        print(json.dumps(_warm_probe(sys.argv[2])))
    else:
        feats, boxes, scale = workload(sys.argv[1])
        print(json.dumps({op: peak_rss_delta_mb(fn, feats, boxes) for op, fn in op_functions(scale).items()}))
