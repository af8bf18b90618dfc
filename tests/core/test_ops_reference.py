"""roi_pool / roi_align against the NumPy reference (torchvision's kernels, line by line)."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st, HealthCheck

from roi_core import roi_align, roi_pool
from roi_core.reference import roi_align_ref, roi_pool_ref
from tests.core.compile_modes import MODES, assert_align_equal, run_in_mode

ATOL = 1e-5


def random_case(seed, n_img=2, h=11, w=14, c=3, k=25, lo=-20.0, hi=90.0):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n_img, h, w, c)).astype(np.float32)
    xy = rng.uniform(lo, hi, size=(k, 4)).astype(np.float32)
    idx = rng.integers(0, n_img, size=(k, 1)).astype(np.float32)
    return feats, np.concatenate([idx, xy], axis=1)


# Hand-made edge cases: tiny, zero-area, inverted, outside, huge, exactly on borders, halves.
EDGE_BOXES = np.array(
    [
        [0, 0, 0, 0, 0],
        [0, 3, 3, 3, 3],
        [1, 5, 2, 1, 1],  # inverted
        [0, -50, -50, -10, -10],  # fully outside (top-left)
        [1, 100, 100, 200, 200],  # fully outside (bottom-right)
        [0, -100, -100, 400, 400],  # much bigger than the map
        [1, 0, 0, 55, 43],  # the whole map at scale 1/4
        [0, 2.5, 1.5, 6.5, 9.5],  # halves: rounding half away from zero
        [1, -2.5, -1.5, 3.5, 2.5],
        [0, 10, 10, 10.4, 10.6],
        [1, 0.1, 0.1, 0.2, 0.2],
    ],
    dtype=np.float32,
)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", [1.0, 0.25, 0.5, 1 / 3, 1 / 16])
@pytest.mark.parametrize("output_size", [1, (2, 3), 7])
def test_roi_pool_matches_reference(scale, output_size, mode):
    feats, boxes = random_case(1)
    boxes = np.concatenate([boxes, EDGE_BOXES])
    got = run_in_mode(mode, lambda f, b: roi_pool(f, b, output_size, scale), feats, boxes)
    np.testing.assert_allclose(got, roi_pool_ref(feats, boxes, output_size, scale), atol=ATOL)


@pytest.mark.parametrize("scale", [1.0, 0.25, 1 / 3])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_roi_align_matches_reference(scale, sampling_ratio, aligned, mode):
    feats, boxes = random_case(2)
    boxes = np.concatenate([boxes, EDGE_BOXES])
    got = run_in_mode(mode, lambda f, b: roi_align(f, b, (3, 4), scale, sampling_ratio, aligned), feats, boxes)
    want = roi_align_ref(feats, boxes, (3, 4), scale, sampling_ratio, aligned)
    assert_align_equal(got, want, boxes, (3, 4), scale, sampling_ratio, aligned)


def test_roi_align_large_adaptive_grid():
    # Bins of many cells exercise the candidate enumeration far from the box start.
    feats, _ = random_case(3, n_img=1, h=40, w=37, c=2)
    boxes = np.array([[0, -3, -2, 39.7, 38.2], [0, 1.3, 0.2, 36.9, 12.1], [0, 5, 5, 6, 30]], np.float32)
    for aligned in (False, True):
        for mode in MODES:
            got = run_in_mode(mode, lambda f, b: roi_align(f, b, (2, 3), 1.0, -1, aligned), feats, boxes)
            assert_align_equal(got, roi_align_ref(feats, boxes, (2, 3), 1.0, -1, aligned), boxes, (2, 3), 1.0, -1, aligned)


box_coord = st.floats(-30, 120, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    coords=st.lists(st.tuples(st.integers(0, 1), box_coord, box_coord, box_coord, box_coord), min_size=1, max_size=6),
    ph=st.integers(1, 5),
    pw=st.integers(1, 5),
    scale=st.sampled_from([1.0, 0.5, 0.25, 0.125, 0.3]),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(MODES),
)
def test_roi_pool_property(coords, ph, pw, scale, seed, mode):
    feats = np.random.default_rng(seed).normal(size=(2, 9, 12, 2)).astype(np.float32)
    boxes = np.array(coords, dtype=np.float32)
    got = run_in_mode(mode, lambda f, b: roi_pool(f, b, (ph, pw), scale), feats, boxes)
    np.testing.assert_allclose(got, roi_pool_ref(feats, boxes, (ph, pw), scale), atol=ATOL)


# 20 examples, not 40 (each compiles): the edge cases are the explicit list above,
# test_roi_align_matches_reference (EDGE_BOXES in every mode, scale 1, 1/4, 1/3, sampling
# ratio -1..3, aligned or not); this adds random boxes, output sizes and scales 0.5, 0.3
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    coords=st.lists(st.tuples(st.integers(0, 1), box_coord, box_coord, box_coord, box_coord), min_size=1, max_size=6),
    ph=st.integers(1, 4),
    pw=st.integers(1, 4),
    scale=st.sampled_from([1.0, 0.5, 0.25, 0.3]),
    sampling_ratio=st.integers(-1, 3),
    aligned=st.booleans(),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(MODES),
)
def test_roi_align_property(coords, ph, pw, scale, sampling_ratio, aligned, seed, mode):
    feats = np.random.default_rng(seed).normal(size=(2, 9, 12, 2)).astype(np.float32)
    boxes = np.array(coords, dtype=np.float32)
    got = run_in_mode(mode, lambda f, b: roi_align(f, b, (ph, pw), scale, sampling_ratio, aligned), feats, boxes)
    want = roi_align_ref(feats, boxes, (ph, pw), scale, sampling_ratio, aligned)
    assert_align_equal(got, want, boxes, (ph, pw), scale, sampling_ratio, aligned)


@pytest.mark.parametrize("jit", [False, True])
def test_graph_mode_division_is_exact(jit):
    # Graph mode and XLA turn float32 x / 7 into x * (1/7); 6 / 7 * 7 then ceils to 7, not 6.
    feats, boxes = random_case(1)
    pool = tf.function(lambda f, b: roi_pool(f, b, 7, 1 / 16), jit_compile=jit)
    np.testing.assert_allclose(pool(feats, boxes).numpy(), roi_pool_ref(feats, boxes, 7, 1 / 16), atol=ATOL)
    exact = np.array([[0, 0, 0, 14, 14], [1, 0, 0, 21, 7], [0, 1, 2, 7, 9]], np.float32)  # bins of exactly 2, 3, 1
    align = tf.function(lambda f, b: roi_align(f, b, 7, 1.0, -1, False), jit_compile=jit)
    np.testing.assert_allclose(align(feats, exact).numpy(), roi_align_ref(feats, exact, 7, 1.0, -1, False), atol=ATOL)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_ops_inside_tf_function(jit, sampling_ratio):
    feats, boxes = random_case(4)
    boxes = np.concatenate([boxes, EDGE_BOXES])
    pool = tf.function(lambda f, b: roi_pool(f, b, (2, 3), 0.25), jit_compile=jit)
    align = tf.function(lambda f, b: roi_align(f, b, (2, 3), 0.25, sampling_ratio, True), jit_compile=jit)
    np.testing.assert_allclose(pool(feats, boxes).numpy(), roi_pool_ref(feats, boxes, (2, 3), 0.25), atol=ATOL)
    np.testing.assert_allclose(
        align(feats, boxes).numpy(), roi_align_ref(feats, boxes, (2, 3), 0.25, sampling_ratio, True), atol=ATOL
    )


def test_general_pool_path_for_boxes_bigger_than_the_map():
    # Bins longer than the precompiled levels cover take the general path; same numbers.
    feats, _ = random_case(5, n_img=1, h=33, w=30, c=2)
    boxes = np.array([[0, -500, -400, 900, 800], [0, 1, 1, 20, 25]], np.float32)
    for mode in MODES:
        got = run_in_mode(mode, lambda f, b: roi_pool(f, b, 2, 1.0), feats, boxes)
        np.testing.assert_allclose(got, roi_pool_ref(feats, boxes, 2, 1.0), atol=0)
