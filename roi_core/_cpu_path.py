"""Large eager calls on the CPU: Numba's direct loops (``_cpu_kernels``) instead of the graph
kernels, when Numba is installed.

The loops read features in place (``np.asarray`` of a CPU tensor is a view) and write the
output once, into a buffer that TensorFlow then takes over without a copy (DLPack). Bin edges
and sample grids are the graph code's own, so every path pools the same cells and samples.
The gradient is the graph kernels' (a custom gradient recomputes the forward there), so
training sees exactly the gradients of the other call modes.
"""
from __future__ import annotations

import functools
import threading

import numpy as np
import tensorflow as tf

from . import _align_walk as walk
from ._align_kernels import align_geometry
from ._pool_kernels import pool_bins
from .compile_policy import own_graph

# Numba's default thread pool runs one parallel loop at a time (a second caller thread would
# abort the process), and the GUI pools from its worker while an export may run.
_LOCK = threading.Lock()

# The direct RoIAlign loop visits every sample: above this many samples per bin (a box many
# times the map with an adaptive grid) the graph kernels serve, as they do for such boxes.
MAX_SAMPLES_PER_BIN = walk.MAX_SAMPLES_PER_BIN

_ALIGN = 64  # bytes: TensorFlow's allocator alignment, kept so the DLPack import is a view


# Tests switch the direct loops off to check the graph kernels an eager call takes without them.
ENABLED = True

# The ops whose loop has run in this process (compiled, or loaded from Numba's cache): small
# calls take those loops too, but never pay for importing Numba or compiling.
_READY: set = set()


def ready(op) -> bool:
    return op in _READY


@functools.cache
def _kernels():
    """The loops' module, imported on the first large call (importing Numba takes a few tenths
    of a second, which the GUI's start and first grid need not wait for), or None without Numba:
    then the graph kernels serve every call."""
    try:
        from . import _cpu_kernels
    except ImportError:
        return None
    return _cpu_kernels


def available(features) -> bool:
    return ENABLED and tf.executing_eagerly() and "CPU" in features.device and _kernels() is not None


def _output_buffer(shape):
    """An uninitialised float32 array starting on an ``_ALIGN``-byte boundary."""
    n = int(np.prod(shape))
    raw = np.empty(n + _ALIGN // 4, np.float32)
    skip = (-raw.ctypes.data % _ALIGN) // 4
    return raw[skip : skip + n].reshape(shape)


@functools.lru_cache(maxsize=None)
def _geometry_graph(op, ph, pw, static):
    """The bin edges (the pools) or sample grids (the aligns) as one graph for any box count."""
    kwargs = dict(static)
    if op in ("pool", "ps_pool"):
        fn = lambda bx, s, h, w: pool_bins(bx, ph, pw, s, h, w, position_sensitive=op == "ps_pool")  # noqa: E731
    else:
        aligned = kwargs.get("aligned", True)  # PS RoIAlign samples as aligned=True does
        fn = lambda bx, s, h, w: align_geometry(bx, ph, pw, s, kwargs["sampling_ratio"], aligned)  # noqa: E731
    spec = (tf.TensorSpec([None, 5], tf.float32), tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32))
    return own_graph(fn, spec)


def _grouped(feats, op, ph, pw):
    """Features as ``(B, H, W, groups, C_out)``: a view with one group for RoIAlign; for the
    position-sensitive ops a copy with channel ``(c * ph + p) * pw + q`` at ``[p * pw + q, c]``,
    so that each bin reads its channels contiguously."""
    n, height, width, channels = feats.shape
    if not op.startswith("ps_"):
        return feats.reshape(n, height, width, 1, channels)
    grouped = feats.reshape(n, height, width, channels // (ph * pw), ph * pw)
    return np.ascontiguousarray(grouped.transpose(0, 1, 2, 4, 3))


def _forward(op, features, boxes, ph, pw, scale, static):
    """The direct loop's output, or None where the graph kernels must serve (huge grids).
    ``scale``: a float32 scalar tensor (the caller's, shared with its graph call)."""
    raw = np.asarray(features)  # a view of the tensor's buffer
    height, width = raw.shape[1], raw.shape[2]
    geometry = _geometry_graph(op, ph, pw, tuple(sorted(static.items())))(boxes, scale, height, width)
    geometry = [np.asarray(g) for g in geometry]
    if op in ("align", "ps_align"):  # decided before the features are grouped or the output allocated
        grid_h, grid_w = geometry[4], geometry[5]
        if grid_h.size and int((grid_h.astype(np.int64) * grid_w).max()) > MAX_SAMPLES_PER_BIN:
            return None
        geometry = [np.asarray(boxes)[:, 0].astype(np.int32), *geometry]  # the image of each box first
    feats = raw if op == "pool" else _grouped(raw, op, ph, pw)
    out = _output_buffer((boxes.shape[0], ph, pw, feats.shape[-1]))
    kernels = _kernels()
    kernel = {"pool": kernels.pool_forward, "ps_pool": kernels.ps_pool_forward}.get(op, kernels.align_forward)
    with _LOCK:
        kernel(feats, *geometry, out)
    _READY.add(op)
    return tf.experimental.dlpack.from_dlpack(out.__dlpack__())


def run(op, features, boxes, ph, pw, scale, graph_call, **static):
    """``op`` ("pool", "align", "ps_pool" or "ps_align") by the direct loop, with
    ``graph_call(features)`` (the graph kernels on the same boxes) for the gradient and for what
    the loop does not serve. ``scale``: a float32 scalar tensor."""
    out = _forward(op, features, boxes, ph, pw, scale, static)
    if out is None:
        return graph_call(features)

    @tf.custom_gradient
    def direct(feats):
        def grad(upstream):
            with tf.GradientTape() as tape:
                tape.watch(feats)
                again = graph_call(feats)
            return tape.gradient(again, feats, output_gradients=upstream)

        return out, grad

    return direct(features)


# (op, ph, pw) of the tiny calls ``warm`` makes: each array layout a real call hands the loops
# (Numba compiles once per dtype, rank, layout and read-only flag). RoIPool's and RoIAlign's
# features are read-only views of the tensor; the position-sensitive ops group channels into a
# writable copy, but into a read-only view where that is already contiguous (1x1, or one output
# channel). 7x7, the usual size, so its geometry graphs are traced here for the first real call.
_WARM_CALLS = (("pool", 7, 7), ("align", 7, 7), ("ps_pool", 7, 7), ("ps_align", 7, 7), ("ps_pool", 1, 1))


def warm() -> bool:
    """Compile the loops for every signature a large call uses, or load them from Numba's
    on-disk cache (``__pycache__`` beside ``_cpu_kernels.py``): each op runs through
    ``_forward`` on a tiny map, so its arrays are made as a real call makes them. Afterwards no
    large call stops to compile (seconds per op the first time on a machine; a new process
    loads the cache in some tenths). False, doing nothing, without Numba or with the loops
    switched off (``ENABLED``); True once the loops are ready."""
    if not ENABLED or _kernels() is None:
        return False
    with tf.device("/CPU:0"):  # the loops' inputs are CPU tensors, whatever else is visible
        boxes = tf.constant([[0.0, 0.0, 0.0, 1.0, 1.0]], tf.float32)
        scale = tf.constant(1.0, tf.float32)
        for op, ph, pw in _WARM_CALLS:
            features = tf.zeros((1, 2, 2, 2 * ph * pw), tf.float32)  # 2 channels per PS group
            static = {} if op.endswith("pool") else {"sampling_ratio": -1}
            if op == "align":
                static["aligned"] = True
            _forward(op, features, boxes, ph, pw, scale, static)
    return True
