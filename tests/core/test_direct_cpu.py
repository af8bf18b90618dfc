"""The Numba loops that large eager calls take on the CPU (roi_core/_cpu_path.py): equal to the
NumPy reference (torchvision's loops) bit for bit, the graph kernels' gradients, the graph
kernels where a grid would be too large, and safe from two threads at once."""
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings, strategies as st

from roi_core import _cpu_kernels, _cpu_path, ps_roi_align, ps_roi_pool, roi_align, roi_pool
from roi_core.reference import ps_roi_align_ref, ps_roi_pool_ref, roi_align_ref, roi_pool_ref
from tests.core.compile_modes import assert_align_equal, eager_compiled


def _case(seed, k=48, channels=5):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(2, 9, 11, channels)).astype(np.float32)
    boxes = np.c_[rng.integers(0, 2, k), rng.uniform(-6, 15, (k, 4))].astype(np.float32)
    # the edge cases: samples exactly on the right/bottom edge, rounding-sensitive starts
    edges = [[1, 8, 5, 10, 6], [0, 5, 3, 12, 9], [0, 32, 20, 40, 24], [1, 0, 0, 0, 0], [0, 11, 9, 11, 9]]
    return feats, np.r_[boxes, np.array(edges, np.float32)]


@pytest.mark.parametrize("sampling_ratio,aligned", [(-1, False), (-1, True), (1, False), (2, True), (3, False)])
@pytest.mark.parametrize("scale", [1.0, 0.25, 0.3])
def test_direct_roi_align_equals_torchvision_loops_bit_for_bit(sampling_ratio, aligned, scale):
    feats, boxes = _case(1)
    with eager_compiled(True, direct=True):
        got = roi_align(feats, boxes, (7, 5), scale, sampling_ratio, aligned).numpy()
    np.testing.assert_array_equal(got, roi_align_ref(feats, boxes, (7, 5), scale, sampling_ratio, aligned))


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.3])
def test_direct_roi_pool_equals_torchvision_loops_bit_for_bit(scale):
    feats, boxes = _case(2)
    feats[0, 2:5, 3:6, 0] = np.nan  # ignored by the strict >
    feats[1, :, :, 1] = -np.inf  # an all -inf bin stays at -FLT_MAX
    feats[0, 4, 4, 2] = np.inf
    with eager_compiled(True, direct=True):
        got = roi_pool(feats, boxes, (3, 4), scale).numpy()
    np.testing.assert_array_equal(got, roi_pool_ref(feats, boxes, (3, 4), scale))
    assert np.any(got == -np.finfo(np.float32).max)


@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_direct_position_sensitive_ops_equal_torchvision_loops_bit_for_bit(sampling_ratio, scale):
    """Bin (p, q) of output channel c reads input channel (c * ph + p) * pw + q."""
    feats, boxes = _case(8, channels=3 * 2 * 4)
    with eager_compiled(True, direct=True):
        pooled = ps_roi_pool(feats, boxes, (2, 3), scale).numpy()
        aligned = ps_roi_align(feats, boxes, (2, 3), scale, sampling_ratio).numpy()
    np.testing.assert_array_equal(pooled, ps_roi_pool_ref(feats, boxes, (2, 3), scale))
    np.testing.assert_array_equal(aligned, ps_roi_align_ref(feats, boxes, (2, 3), scale, sampling_ratio))


GRADIENT_CALLS = {
    "pool": lambda x, b: roi_pool(x, b, 2, 0.5),
    "align": lambda x, b: roi_align(x, b, 2, 0.5, -1, False),
    "ps_pool": lambda x, b: ps_roi_pool(x, b, 2, 0.5),
    "ps_align": lambda x, b: ps_roi_align(x, b, 2, 0.5),
}


@pytest.mark.parametrize("op", list(GRADIENT_CALLS))
def test_direct_gradient_is_the_graph_kernels(op):
    feats, boxes = _case(3, channels=8)
    call = lambda x: GRADIENT_CALLS[op](x, boxes)  # noqa: E731
    c_out = 2 if op.startswith("ps_") else 8
    upstream = tf.constant(np.random.default_rng(4).normal(size=(len(boxes), 2, 2, c_out)).astype(np.float32))
    grads = []
    for direct in (True, False):
        x = tf.constant(feats)
        with eager_compiled(True, direct=direct), tf.GradientTape() as tape:
            tape.watch(x)
            out = call(x)
        grads.append(tape.gradient(out, x, output_gradients=upstream).numpy())
    assert np.abs(grads[0]).sum() > 0
    np.testing.assert_array_equal(grads[0], grads[1])


def _count_calls(monkeypatch, name):
    calls = []
    real = getattr(_cpu_kernels, name)
    monkeypatch.setattr(_cpu_kernels, name, lambda *a: calls.append(1) or real(*a))
    return calls


def test_huge_adaptive_grids_take_the_graph_kernels(monkeypatch):
    """A box thousands of cells wide has millions of samples per bin: the direct loop would
    visit each; the graph kernels' cost follows the cells."""
    calls = _count_calls(monkeypatch, "align_forward")
    feats = np.random.default_rng(5).normal(size=(1, 6, 7, 3)).astype(np.float32)
    small = np.array([[0, 1, 1, 5, 4]], np.float32)
    huge = np.array([[0, -1e5, -1e5, 1e5, 1e5]], np.float32)
    with eager_compiled(True, direct=True):
        roi_align(feats, small, 2)
        assert len(calls) == 1
        got = roi_align(feats, huge, 2).numpy()
    assert len(calls) == 1  # not called again
    with eager_compiled(True, direct=False):
        np.testing.assert_array_equal(got, roi_align(feats, huge, 2).numpy())


def test_small_calls_take_the_loops_only_once_they_are_ready_and_graphs_never(monkeypatch):
    calls = _count_calls(monkeypatch, "pool_forward")
    monkeypatch.setattr(_cpu_path, "_READY", set())  # as in a fresh process
    feats, boxes = _case(6)
    roi_pool(feats, boxes, 2)  # few outputs, loop not run yet: the graph path (no Numba compile)
    tf.function(lambda f, b: roi_pool(f, b, 2))(feats, boxes)  # graphs stay serializable: no Python
    assert calls == []
    with eager_compiled(True, direct=True):
        roi_pool(feats, boxes, 2)  # a large call runs the loop
    assert calls == [1]
    roi_pool(feats, boxes, 2)  # now small calls take it too
    tf.function(lambda f, b: roi_pool(f, b, 2))(feats, boxes)
    assert calls == [1, 1]
    roi_align(feats, boxes, 2)  # another op's loop is not ready yet
    assert calls == [1, 1] and not _cpu_path.ready("align")


def test_two_threads_pool_at_once():
    """The GUI pools on its worker while an export may run: both get their own, right result."""
    feats, boxes = _case(7, k=300, channels=64)
    want = roi_align_ref(feats, boxes[:40], 7, 0.5)
    results, errors = {}, []

    def work(i):
        try:
            results[i] = roi_align(feats, boxes[:40], 7, 0.5).numpy()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with eager_compiled(True, direct=True):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    for i in range(4):
        np.testing.assert_array_equal(results[i], want)


def test_roi_core_runs_without_numba():
    """Numba is optional and imported only by the first large call (not by ``import roi_core``,
    which the GUI's start waits for); where it cannot be imported, a large eager call takes the
    graph kernels and gives the same numbers."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from roi_core import _cpu_path, roi_pool
        assert "numba" not in sys.modules, "import roi_core imported numba"
        sys.modules["numba"] = None  # import numba now raises ImportError
        from roi_core.reference import roi_pool_ref
        assert _cpu_path._kernels() is None
        rng = np.random.default_rng(0)
        feats = rng.normal(size=(1, 30, 40, 64)).astype(np.float32)
        boxes = np.c_[np.zeros(700), rng.uniform(0, 600, (700, 4))].astype(np.float32)
        out = roi_pool(feats, boxes, 7, 1 / 16).numpy()  # 700 * 49 * 64 outputs: a large call
        np.testing.assert_array_equal(out, roi_pool_ref(feats, boxes, 7, 1 / 16))
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


coord = st.floats(-12, 60, allow_nan=False, width=32)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    coords=st.lists(st.tuples(st.integers(0, 1), coord, coord, coord, coord), min_size=1, max_size=6),
    size=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    scale=st.sampled_from([1.0, 0.5, 0.25, 0.3, 1 / 16]),
    sampling_ratio=st.integers(-1, 3),
    aligned=st.booleans(),
    seed=st.integers(0, 2**16),
)
# found by hypothesis: 27 x 38 = 1026 samples in the one bin, past the walk's limit
@example(coords=[(0, 0.0, 0.0, 27.0, 38.0)], size=(1, 1), scale=1.0, sampling_ratio=0, aligned=False, seed=0)
def test_direct_loops_equal_torchvision_loops_bit_for_bit(coords, size, scale, sampling_ratio, aligned, seed):
    feats = np.random.default_rng(seed).normal(size=(2, 8, 11, 3)).astype(np.float32)
    boxes = np.array(coords, np.float32)
    with eager_compiled(True, direct=True):
        pooled = roi_pool(feats, boxes, size, scale).numpy()
        sampled = roi_align(feats, boxes, size, scale, sampling_ratio, aligned).numpy()
    np.testing.assert_array_equal(pooled, roi_pool_ref(feats, boxes, size, scale))
    assert_align_equal(sampled, roi_align_ref(feats, boxes, size, scale, sampling_ratio, aligned), boxes, size, scale, sampling_ratio, aligned)


_WARM_SCRIPT = """
import numpy as np
import tensorflow as tf
from roi_core import _cpu_kernels, _cpu_path, multi_scale_roi_align, ps_roi_align, ps_roi_pool, roi_align, roi_pool
from tests.core.compile_modes import eager_compiled

loops = (_cpu_kernels.pool_forward, _cpu_kernels.ps_pool_forward, _cpu_kernels.align_forward)
assert all(not loop.signatures for loop in loops), "a loop was compiled before warm()"
assert _cpu_path.warm() is True
warmed = [set(loop.signatures) for loop in loops]

served, forward = [], _cpu_path._forward
_cpu_path._forward = lambda *args: served.append(forward(*args)) or served[-1]
rng = np.random.default_rng(0)
feats = lambda c, b=1: rng.normal(size=(b, 9, 11, c)).astype(np.float32)
boxes = np.c_[rng.integers(0, 2, 30), rng.uniform(-4, 80, (30, 4))].astype(np.float32)
with eager_compiled(True, direct=True):
    roi_pool(feats(5, 2), boxes, 7, 0.25)  # NumPy features, as the GUI and the export pass them
    roi_pool(tf.constant(feats(3, 2)), boxes, (2, 3), 0.5)
    roi_align(feats(4, 2), boxes, 7, 0.25, -1, True)
    roi_align(tf.constant(feats(4, 2)), boxes, (3, 1), 0.5, 2, False)
    ps_roi_pool(feats(49 * 3, 2), boxes, 7, 0.25)  # channels grouped into a copy
    ps_roi_pool(feats(3, 2), boxes, 1, 0.25)  # 1x1: the grouping is a view
    ps_roi_pool(feats(6, 2), boxes, (2, 3), 0.25)  # one channel per group: a view too
    ps_roi_align(feats(12, 2), boxes, 2, 0.25, -1)
    ps_roi_align(feats(3, 2), boxes, 1, 0.25, 2)
    levels = [feats(2), rng.normal(size=(1, 5, 6, 2)).astype(np.float32)]
    multi_scale_roi_align(levels, boxes * np.float32([0, 1, 1, 1, 1]), 7, (36, 44))
assert len(served) >= 11 and all(out is not None for out in served), "a call did not take the loops"
new = [sorted(map(str, set(loop.signatures) - had)) for loop, had in zip(loops, warmed)]
assert not any(new), f"compiled after warm(): {new}"
print("ok")
"""


def test_warm_compiles_every_signature_a_large_call_uses(pytestconfig):
    """After ``warm()`` no large call compiles a loop: in a fresh process (the loops hold their
    signatures per process), every layout a real call hands them (NumPy or tensor features,
    several images, the position-sensitive ops' grouped copies and views) is already there."""
    done = subprocess.run([sys.executable, "-c", _WARM_SCRIPT], capture_output=True, text=True, timeout=600, cwd=pytestconfig.rootpath)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_warm_does_nothing_without_numba_or_with_the_loops_off(monkeypatch):
    ran = []
    monkeypatch.setattr(_cpu_path, "_forward", lambda *args: ran.append(args))
    monkeypatch.setattr(_cpu_path, "ENABLED", False)
    assert _cpu_path.warm() is False
    monkeypatch.setattr(_cpu_path, "ENABLED", True)
    monkeypatch.setattr(_cpu_path, "_kernels", lambda: None)
    assert _cpu_path.warm() is False
    assert ran == []
