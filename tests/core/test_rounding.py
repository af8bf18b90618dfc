"""Box coordinates round as torchvision's C++ ``round`` does, in every call mode."""
import numpy as np
import pytest
import tensorflow as tf

from roi_core import ps_roi_pool, roi_pool
from roi_core._align_kernels import bin_starts
from roi_core.reference import ps_roi_pool_ref, roi_pool_ref
from tests.core.compile_modes import MODES, run_in_mode

JUST_BELOW_HALF = np.float32(0.5) - np.float32(2**-25)  # 0.49999997: |x| + 0.5 rounds to 1 in float32


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_an_edge_just_below_half_a_cell_rounds_down(mode, scale):
    """C's round(0.49999997) is 0; floor(x + 0.5) in float32 gave 1 and dropped row/column 0."""
    x = np.float32(JUST_BELOW_HALF / np.float32(scale))
    assert np.float32(x * np.float32(scale)) == JUST_BELOW_HALF
    feats = np.zeros((1, 4, 5, 8), np.float32)
    feats[0, 0, 0] = 10.0  # only cell (0, 0) holds the maximum
    feats[0, 1:, 1:] = 1.0
    boxes = np.array([[0, x, x, 3 / scale, 3 / scale], [0, -x, -x, 3 / scale, 2 / scale]], np.float32)
    got = run_in_mode(mode, lambda f, b: roi_pool(f, b, 1, scale), feats, boxes)
    want = roi_pool_ref(feats, boxes, 1, scale)
    assert np.all(want == 10.0)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", ["eager", "tf_function", "jit"])
def test_position_sensitive_pool_rounds_the_same(mode):
    feats = np.random.default_rng(0).normal(size=(1, 5, 6, 4)).astype(np.float32)
    boxes = np.array([[0, JUST_BELOW_HALF, JUST_BELOW_HALF, 4, 4]], np.float32)
    got = run_in_mode(mode, lambda f, b: ps_roi_pool(f, b, 2, 1.0), feats, boxes)
    np.testing.assert_allclose(got, ps_roi_pool_ref(feats, boxes, 2, 1.0), rtol=1e-6)


def test_products_round_on_their_own_under_xla():
    """torchvision's ``start + p * bin``: the product rounds, then the sum. XLA fuses a
    multiply and an add into one FMA, and LLVM narrowed a float64 product rounded by a
    conversion back into that multiply (50k of 460k bin starts differed)."""
    rng = np.random.default_rng(0)
    start = (rng.normal(size=1 << 15) * 50).astype(np.float32)
    bins = (rng.random(size=1 << 15) * 20).astype(np.float32)
    want = start[:, None] + (np.arange(7, dtype=np.float32)[None, :] * bins[:, None]).astype(np.float32)
    got = tf.function(lambda s, b: bin_starts(s, b, 7), jit_compile=True)(start, bins).numpy()
    np.testing.assert_array_equal(got, want)
