"""When the operators run XLA-compiled kernels, with which static bounds, and how eager calls
keep the number of compiled shapes small. Every choice ends up in one ``Plan``."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import tensorflow as tf

from ._numerics import floor_log2, in_xla_context

# Eager calls that produce fewer output values than this run uncompiled paths. Compiling a
# kernel costs about a second for each new feature-map shape and box-count bucket, which
# interactive and variable-size eager use (the GUI, an export over images of many sizes) never
# earns back; graph callers (tf.function, Keras) always get the compiled kernels.
EAGER_COMPILE_MIN_OUTPUTS = 1 << 21


@dataclass(frozen=True, slots=True)
class Plan:
    """Which kernels one call runs. Hashable and without a weak reference, so ``tf.function``
    keys its traces on the plan's value.

    compiled: run the XLA-compiled kernels (when the RoIs fit ``bounds``); False runs only the
      general, uncompiled paths.
    xla: the call is inside the caller's XLA cluster: static shapes, no sparse ops; the kernels
      are inlined there instead of being compiled on their own.
    bucket: pad the box count of the separately compiled kernels to a few sizes (eager callers,
      whose count changes from call to call); a caller's own graph keeps its shapes.
    bounds: the kernels' static bounds, from the feature-map shape (see ``pool_bounds`` and
      ``no_bounds``); None when the shape is unknown or the kernels need none.
    huge: RoIAlign RoIs beyond the sample walk's limit may come, so the graph holds the
      contraction for them; an eager call knows its boxes and, mostly, spares that graph its
      trace (half the first call's wait).
    """

    compiled: bool
    xla: bool
    bucket: bool
    bounds: tuple | None
    huge: bool = True


def worth_compiling(features, boxes, ph, pw) -> bool:
    return boxes.shape[0] * ph * pw * features.shape[3] >= EAGER_COMPILE_MIN_OUTPUTS


def make_plan(features, boxes, ph, pw, bounds_of) -> Plan:
    """The plan for a call from here: eagerly, a tf.function graph or the caller's XLA.
    ``bounds_of(features, ph, pw)`` gives the kernel's static bounds (None: unknown)."""
    if tf.executing_eagerly():
        # Bounds come from the shape here: the eager graph relaxes its shapes to None once a
        # second image size comes by, and would lose them.
        compiled = worth_compiling(features, boxes, ph, pw)
        return Plan(compiled=compiled, xla=False, bucket=True, bounds=bounds_of(features, ph, pw) if compiled else None)
    return Plan(compiled=True, xla=in_xla_context(), bucket=False, bounds=bounds_of(features, ph, pw))


def pool_bounds(features, ph, pw):
    """Static bounds that hold for every RoIPool bin of a RoI inside the map (a bin spans at
    most (H + 2) / ph + 2 cells): (max_rows, levels_w), or None for unknown sizes."""
    height, width = features.shape[1], features.shape[2]
    if height is None or width is None:
        return None
    max_rows = min(height, -(-(height + 2) // ph) + 2)
    levels_w = min(width.bit_length(), (-(-(width + 2) // pw) + 2).bit_length())
    return max_rows, levels_w


def no_bounds(features, ph, pw):
    """For kernels that need no static bounds (RoIAlign's sample walk, PS RoIPool): one trace
    serves every feature-map shape."""
    return None


def bucketed(call, boxes, bucket):
    """``call(boxes)`` of an XLA-compiled kernel on boxes padded to one of four sizes per power
    of two, so a changing number of boxes compiles a handful of shapes, not one per count.
    ``bucket`` is for eager callers; a caller's own graph keeps its shapes (XLA has them static)."""
    if not bucket or in_xla_context():
        return call(boxes)
    k = tf.shape(boxes)[0]
    step = tf.maximum(8, tf.bitwise.left_shift(1, tf.maximum(floor_log2(tf.maximum(k, 1)) - 2, 0)))
    size = (k + step - 1) // step * step  # at most 25% padding
    out = call(tf.pad(boxes, [[0, size - k], [0, 0]]))
    if isinstance(out, tuple):
        return tuple(t[:k] for t in out)
    return out[:k]


# Every eager graph takes features and boxes of any shape, so one trace serves every image
# size and box count; a relaxed ``reduce_retracing`` graph traced twice first (the second time,
# ~0.4 s, when the second image size came by) and warned about it.
_ANY_SHAPE = (
    tf.TensorSpec([None, None, None, None], tf.float32),
    tf.TensorSpec([None, 5], tf.float32),
    tf.TensorSpec([], tf.float32),
)


class EagerGraphs:
    """The graphs an eager call of ``core`` runs, one per output size, plan and static
    argument, each traced once for any shape, instead of hundreds of eager ops per call.

    The cores are plain TensorFlow (no Python control flow on tensors), so AutoGraph's source
    conversion is skipped: it was most of the ~1.5 s that the first call of a session waited."""

    def __init__(self, core):
        self.core = core
        self._graphs = {}
        self._lock = threading.Lock()  # the GUI pools on its worker and its own thread

    def __call__(self, features, boxes, ph, pw, scale, *, plan: Plan, **static):
        key = (ph, pw, plan, tuple(sorted(static.items())))
        with self._lock:
            graph = self._graphs.get(key)
            if graph is None:
                graph = self._graphs[key] = self._trace(ph, pw, plan, static)
        return graph(features, boxes, scale)

    def _trace(self, ph, pw, plan, static):
        core = self.core

        def eager_call(f, b, s):
            return core(f, b, ph, pw, s, plan=plan, **static)

        return tf.function(eager_call, input_signature=_ANY_SHAPE, autograph=False)


# The qualified names of roi_core's own graph functions (see ``own_graph``).
_OWN_GRAPHS = {f"{EagerGraphs.__qualname__}._trace.<locals>.eager_call"}


def own_graph(fn, input_signature):
    """``tf.function(fn)`` for one of roi_core's small per-key graphs (one per output size and
    static setting, each traced once for any shape), whose first traces TensorFlow would
    report as retracing of one function (see ``_OwnRetracingFilter``)."""
    _OWN_GRAPHS.add(fn.__qualname__)
    return tf.function(fn, input_signature=input_signature, autograph=False)


class _OwnRetracingFilter(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning about the operators' own
    graphs only. A compiled plan's graph is made per feature-map shape (the kernel bounds
    follow it) and traced once, but TensorFlow counts those first traces as retracing of one
    function, which is not the caller's mistake the warning is about; a warning about any other
    function still gets through."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "triggered tf.function retracing" not in message or not any(name in message for name in _OWN_GRAPHS)


tf.get_logger().addFilter(_OwnRetracingFilter())
