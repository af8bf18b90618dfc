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


def round_to_float32(x64):
    """float64 values rounded to the nearest float32 (ties to even), as float32, by integer
    operations on the bits. A conversion (``fptrunc``) of a float64 product would not do: LLVM
    narrows ``fptrunc(fpext a * fpext b)`` to a float32 multiply, which XLA then fuses with a
    following add into one FMA. Exact for results in float32's normal range."""
    bits = tf.bitcast(tf.cast(x64, tf.float64), tf.int64)
    lsb = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 29), 1)  # of the kept mantissa
    half_dropped = tf.constant((1 << 28) - 1, tf.int64)  # float64 keeps 29 more mantissa bits
    bits = tf.bitwise.bitwise_and(bits + (half_dropped + lsb), tf.constant(~((1 << 29) - 1), tf.int64))
    return tf.cast(tf.bitcast(bits, tf.float64), tf.float32)


def mul(a, b):
    """float32 a * b, rounded to float32 on its own, as C++ does. XLA contracts a multiply and
    a following add into one FMA, which skips that rounding and moves torchvision's
    ``start + p * bin`` samples across the map's edge; a float64 product (exact for float32
    operands) rounded by ``round_to_float32`` is opaque to that."""
    a64, b64 = (tf.cast(tf.cast(v, tf.float32), tf.float64) for v in (a, b))  # float32 operands, as in C++
    return round_to_float32(a64 * b64)


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
