"""UMAP in the panel, on the worker, with the real umap-learn (the dev extra installs it): its
epochs report progress, the projection arrives, and Cancel drops it (umap cannot be interrupted). numba compiles
umap's functions on the first fit of a session (~25-40 s on a busy 2-core machine); the later
fits take a fraction of a second."""
import numpy as np
import pytest
from PySide6 import QtCore

from app.gui.region_map_panel import RegionMapPanel
from app.regionmap.projection import umap_available
from tests.gui.test_region_map_panel import three_clusters

COMPILE_MS = 180_000  # the first fit of a session compiles; nothing is slow after that


@pytest.fixture
def panel(qtbot):
    assert umap_available(), "umap-learn is in the dev extra: make test installs it"
    p = RegionMapPanel()
    qtbot.addWidget(p)
    p.resize(900, 600)
    p.show()
    p.set_table(three_clusters())  # PCA at once
    yield p
    p.runner.cancel()
    QtCore.QThreadPool.globalInstance().waitForDone(COMPILE_MS)


def start_umap(panel, epochs):
    """Pick UMAP in the panel's menu, as a user does; returns the (done, total) reports seen."""
    panel.umap_options = {"n_epochs": epochs, "random_state": 0}
    panel.method.setCurrentIndex(panel.method.findData("umap"))
    assert panel.runner.busy() and panel.progress.isVisible() and panel.cancel.isVisible()
    seen = []
    panel.runner.task.signals.progress.connect(lambda done, total: seen.append((done, total)))
    return seen


def test_umap_picked_in_the_panel_reports_its_epochs_and_arrives(panel, qtbot):
    table = panel.map.table
    seen = start_umap(panel, 400)
    with qtbot.waitSignal(panel.map_ready, timeout=COMPILE_MS):
        pass
    assert panel.map.projection.method == "umap" and panel.map.xy.shape == (60, 2)
    assert "UMAP" in panel.status.text() and not panel.progress.isVisible() and not panel.cancel.isVisible()
    assert seen and all(total == 400 for _, total in seen) and seen[-1][0] == 400
    # The three clusters stay apart: each point is nearest to its own cluster's mean.
    groups = np.repeat(np.arange(3), 20)
    means = np.array([panel.map.xy[groups == g].mean(axis=0) for g in range(3)])
    nearest = np.argmin(((panel.map.xy[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == groups).mean() > 0.95 and panel.map.table is table


def test_cancel_during_umap_drops_its_result_and_keeps_the_pca_map(panel, qtbot):
    pca = panel.map
    seen = start_umap(panel, 20_000)  # a few seconds of epochs: Cancel is clicked during them
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=COMPILE_MS)
    qtbot.mouseClick(panel.cancel, QtCore.Qt.MouseButton.LeftButton)
    assert panel.status.text() == "Cancelling..."
    qtbot.waitUntil(lambda: not panel.runner.busy(), timeout=COMPILE_MS)
    assert panel.status.text() == "Cancelled." and not panel.progress.isVisible() and not panel.cancel.isVisible()
    assert panel.map is pca and panel.map.projection.method == "pca"
    # UMAP runs again after a cancel (a cancel that raised inside umap's progress bar once left
    # tqdm's lock held and hung the next run).
    panel.method.setCurrentIndex(panel.method.findData("pca"))
    start_umap(panel, 50)
    with qtbot.waitSignal(panel.map_ready, timeout=60_000):
        pass
    assert panel.map.projection.method == "umap"
