import shutil
from pathlib import Path

import pytest
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets


pg.setConfigOptions(imageAxisOrder="row-major")
SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples"


@pytest.fixture
def sample_dir(tmp_path):
    """A copy of two bundled samples with their sidecars (tests write sidecars)."""
    for name in ("chelsea", "coffee"):
        shutil.copy(SAMPLES / f"{name}.png", tmp_path)
        shutil.copy(SAMPLES / f"{name}.json", tmp_path)
    return tmp_path


@pytest.fixture
def window(qtbot):
    from app.gui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.service.cancel()
    win.service.pool.waitForDone(20000)


def wait_features(qtbot, win, timeout=30000):
    qtbot.waitUntil(lambda: win.inspection.features is not None and win.rgb is not None, timeout=timeout)


def view_to_widget(canvas, x, y):
    scene = canvas.view.mapViewToScene(QtCore.QPointF(x, y))
    return canvas.mapFromScene(scene)


def send_mouse(widget, kind, pos, buttons):
    button = QtCore.Qt.MouseButton.LeftButton if kind != QtCore.QEvent.Type.MouseMove else QtCore.Qt.MouseButton.NoButton
    gpos = widget.mapToGlobal(pos)
    ev = QtGui.QMouseEvent(kind, QtCore.QPointF(pos), QtCore.QPointF(gpos), button, buttons, QtCore.Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(widget, ev)


def drag(qtbot, canvas, start, end, steps=8):
    """A real press / move / release sequence on the canvas viewport, in image coordinates."""
    vp = canvas.viewport()
    held = QtCore.Qt.MouseButton.LeftButton
    p0 = view_to_widget(canvas, *start)
    send_mouse(vp, QtCore.QEvent.Type.MouseButtonPress, p0, held)
    for i in range(1, steps + 1):
        t = i / steps
        x = start[0] + (end[0] - start[0]) * t
        y = start[1] + (end[1] - start[1]) * t
        send_mouse(vp, QtCore.QEvent.Type.MouseMove, view_to_widget(canvas, x, y), held)
        qtbot.wait(5)
    send_mouse(vp, QtCore.QEvent.Type.MouseButtonRelease, view_to_widget(canvas, *end), QtCore.Qt.MouseButton.NoButton)
    qtbot.wait(30)
