"""The compiled RoIPool kernel's one-pass table against the level-by-level sparse table."""
import numpy as np
import pytest
import tensorflow as tf

from roi_core._pool_kernels import _levels_along, _row_window_maxima


# count <= width.bit_length(), as pool_bounds gives
@pytest.mark.parametrize("width, count", [(1, 1), (3, 1), (3, 2), (8, 2), (8, 4), (13, 4)])
def test_one_pass_table_equals_the_sparse_table(width, count):
    feats = tf.constant(np.random.default_rng(width * 10 + count).normal(size=(2, 3, width, 4)).astype(np.float32))
    one_pass = tf.function(lambda f: _row_window_maxima(f, count), jit_compile=True)(feats).numpy()
    levels = _levels_along(feats, None, axis=2, count=count)[0].numpy()
    np.testing.assert_array_equal(one_pass, levels)
    # level j at column w is the maximum of columns w .. w + 2**j - 1, clipped at the edge
    j, w = count - 1, 0
    np.testing.assert_array_equal(one_pass[j, :, :, w], feats.numpy()[:, :, w : w + (1 << j)].max(axis=2))
