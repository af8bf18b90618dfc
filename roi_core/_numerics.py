"""float32 arithmetic that rounds as torchvision's C++ does, whatever TensorFlow or XLA fuse."""
from __future__ import annotations

import tensorflow as tf
from tensorflow.python.ops import control_flow_util

MAX_LEVEL_BITS = 31  # bin lengths are < 2**31


def in_xla_context() -> bool:
    """Inside a caller's XLA cluster: static shapes only (no tf.where subsets, no sparse ops)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def div(a, b):
    """float32 a / b, correctly rounded as in C++. In graph mode and under XLA TensorFlow turns
    float32 division into a multiply by the reciprocal (1 ulp off), which moves floor/ceil bin
    edges and sample counts; float64 division then rounding to float32 is exact here."""
    return tf.cast(tf.cast(a, tf.float64) / tf.cast(b, tf.float64), tf.float32)


def mul(a, b):
    """float32 a * b, rounded to float32 on its own. The float64 product of two float32 values
    is exact, so rounding it gives the float32 product; and since the rounding is an explicit
    conversion, XLA cannot fuse it with a following add into one FMA (which skips the rounding
    torchvision's ``start + p * bin`` does and moves samples across the map's edge)."""
    a64, b64 = (tf.cast(tf.cast(v, tf.float32), tf.float64) for v in (a, b))  # float32 operands, as in C++
    return tf.cast(a64 * b64, tf.float32)


def round_half_away(x):
    """C's ``round`` of float32 values, as float64. In float32 ``|x| + 0.5`` itself rounds:
    0.49999997 + 0.5 gives 1.0, so a box edge at 0.49999997 cells went to cell 1, where
    torchvision's ``round`` gives 0; in float64 the sum is exact."""
    x = tf.cast(x, tf.float64)
    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def floor_log2(n):
    """Exact floor(log2(n)) for int32 n >= 1 (0 for n <= 1)."""
    powers = tf.constant([1 << j for j in range(1, MAX_LEVEL_BITS)], dtype=n.dtype)
    return tf.reduce_sum(tf.cast(n[..., None] >= powers, tf.int32), axis=-1)
