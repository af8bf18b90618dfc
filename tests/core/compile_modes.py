"""Run the operators in each call mode: eager (uncompiled paths), large eager (the compiled
kernels an eager call takes above EAGER_COMPILE_MIN_OUTPUTS), direct (the Numba loops a large
eager call on the CPU takes instead, see roi_core/_cpu_path.py), tf.function and jit_compile."""
from contextlib import contextmanager

import numpy as np
import tensorflow as tf

from roi_core import _cpu_path, compile_policy

MODES = ("eager", "large_eager", "direct", "tf_function", "jit")


@contextmanager
def eager_compiled(compiled, direct=False):
    """Small eager calls normally skip the compiled kernels (see EAGER_COMPILE_MIN_OUTPUTS);
    tests run them both ways. ``direct``: large calls take the Numba loops, not the graph
    kernels."""
    saved = compile_policy.EAGER_COMPILE_MIN_OUTPUTS, _cpu_path.ENABLED
    compile_policy.EAGER_COMPILE_MIN_OUTPUTS = 0 if compiled else 1 << 62
    _cpu_path.ENABLED = direct
    try:
        yield
    finally:
        compile_policy.EAGER_COMPILE_MIN_OUTPUTS, _cpu_path.ENABLED = saved


def run_in_mode(mode, fn, *args):
    """``fn(*args)`` (tensors in, one tensor out) in the given call mode, as a NumPy array."""
    if mode in ("eager", "large_eager", "direct"):
        with eager_compiled(mode != "eager", direct=mode == "direct"):
            return fn(*args).numpy()
    return tf.function(fn, jit_compile=(mode == "jit"))(*args).numpy()


def gradient_in_mode(mode, fn, features, upstream):
    """d(sum(fn(features) * upstream)) / d features in the given call mode."""

    def grad(x, up):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = fn(x)
        return tape.gradient(out, x, output_gradients=up)

    return run_in_mode(mode, grad, tf.constant(features), tf.constant(upstream))


def assert_align_equal(got, want, boxes, output_size, spatial_scale, sampling_ratio=-1, aligned=False):
    """RoIAlign results bit for bit, except the RoIs whose bins have more than
    MAX_SAMPLES_PER_BIN samples (boxes many times the map), computed from separable weights:
    those to float32 rounding of the sum."""
    from roi_core._align_walk import MAX_SAMPLES_PER_BIN, walk_counts
    from roi_core.boxes import normalize_output_size

    ph, pw = normalize_output_size(output_size)
    counts = walk_counts(tf.constant(boxes, tf.float32), ph, pw, spatial_scale, sampling_ratio, aligned).numpy()
    walked = counts <= MAX_SAMPLES_PER_BIN
    np.testing.assert_array_equal(got[walked], want[walked])
    np.testing.assert_allclose(got[~walked], want[~walked], rtol=1e-5, atol=1e-6)
