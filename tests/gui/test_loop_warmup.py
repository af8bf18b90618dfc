"""The window warms roi_core's Numba loops (large pooling calls on the CPU) on the worker thread,
once per process, after the first grid is out: the first grid never waits for them, and the
first call that pools enough boxes does not stop to compile or load them."""
import threading

import pytest
from PySide6 import QtCore

from tests.gui.conftest import wait_features


@pytest.fixture
def warm_calls(monkeypatch):
    """What the worker's warm-up did, in order with the maps' hand-over: ("warm", on the main
    thread?) and "features" (the worker emitting features_ready). Loops usable, warm() recorded."""
    import app.gui.worker as worker
    from roi_core import _cpu_path

    events = []
    monkeypatch.setattr(worker, "_loops_warm_requested", False)  # a fresh session
    monkeypatch.setattr(_cpu_path, "available", lambda features: True)  # whatever this machine has
    monkeypatch.setattr(_cpu_path, "warm", lambda: events.append(("warm", threading.current_thread() is threading.main_thread())) or True)
    real_emit = worker._emit

    def emit(signal, *args):  # features_ready is the signal whose key is a tuple
        if isinstance(args[1], tuple):
            events.append("features")
        real_emit(signal, *args)

    monkeypatch.setattr(worker, "_emit", emit)
    return events


def test_loops_are_warmed_once_on_the_worker_after_the_first_grid(qtbot, window, sample_dir, warm_calls):
    requested = []
    real_request = window.service.warm_loops

    def request():  # the moment the window asks: its first grid must be out already
        requested.append(window.inspection.grid("roi_align") is not None)
        real_request()

    window.service.warm_loops = request
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    qtbot.waitUntil(lambda: ("warm", False) in warm_calls, timeout=30_000)
    assert requested[0] is True
    assert warm_calls.index("features") < warm_calls.index(("warm", False))

    qtbot.keyClick(window, QtCore.Qt.Key.Key_D)  # the next image: its maps, no second warm-up
    qtbot.waitUntil(lambda: warm_calls.count("features") == 2, timeout=30_000)
    wait_features(qtbot, window)
    window.service.pool.waitForDone(30_000)
    assert window.windowTitle() == "RoIScope - coffee.png"
    assert [e for e in warm_calls if e != "features"] == [("warm", False)]


@pytest.mark.parametrize("unusable", ["no numba", "loops off"])
def test_the_warm_up_does_nothing_where_the_loops_cannot_serve(qtbot, window, sample_dir, monkeypatch, caplog, unusable):
    import app.gui.worker as worker
    from roi_core import _cpu_path

    monkeypatch.setattr(worker, "_loops_warm_requested", False)
    if unusable == "no numba":
        monkeypatch.setattr(_cpu_path, "_kernels", lambda: None)  # as where Numba cannot be imported
    else:
        monkeypatch.setattr(_cpu_path, "ENABLED", False)
    warmed, real_warm = [], _cpu_path.warm
    monkeypatch.setattr(_cpu_path, "warm", lambda: warmed.append(real_warm()))
    window.open_paths([sample_dir])
    wait_features(qtbot, window)
    window.service.pool.waitForDone(30_000)
    assert worker._loops_warm_requested  # the warm-up ran, and found nothing to do
    assert warmed == []
    assert not [r for r in caplog.records if r.name == worker.__name__]
    assert window.inspection.grid("roi_align") is not None and window.banner.isHidden()
