"""One background task of the region map (embedding a folder, UMAP, suspects) on a worker thread,
with progress and a cancel flag the task polls. A superseded task's result is dropped."""
from __future__ import annotations

import traceback

from PySide6 import QtCore


class _Signals(QtCore.QObject):
    progress = QtCore.Signal(int, int)
    done = QtCore.Signal(object, str)  # result, error message ("" when fine)


class MapTask(QtCore.QRunnable):
    """Runs ``fn(progress, cancelled)``: ``progress(done, total)`` may be called from the worker;
    ``cancelled()`` turns true after ``cancel()``."""

    def __init__(self, fn):
        super().__init__()
        self.setAutoDelete(False)  # the panel holds it until its signal arrives
        self.fn = fn
        self.signals = _Signals()
        self.cancelled = False

    def cancel(self):
        self.cancelled = True

    def run(self):
        try:
            result, error = self.fn(lambda done, total: self._emit(self.signals.progress, int(done), int(total)),
                                    lambda: self.cancelled), ""
        except Exception as exc:  # noqa: BLE001 - shown in the panel; the app goes on
            result, error = None, str(exc) or traceback.format_exc(limit=1)
        self._emit(self.signals.done, result, error)

    @staticmethod
    def _emit(signal, *args):
        try:
            signal.emit(*args)
        except RuntimeError:  # the panel was closed while this ran
            pass


class TaskRunner(QtCore.QObject):
    """Runs one MapTask at a time for a panel: shows its progress bar and Cancel button while it
    runs, drops the result of a task that a newer one superseded."""

    def __init__(self, progress, cancel_button, status, parent=None):
        super().__init__(parent)
        self.progress, self.cancel_button, self.status = progress, cancel_button, status
        self.task: MapTask | None = None
        cancel_button.clicked.connect(self.cancel)

    def run(self, fn, on_done, text):
        self.cancel()
        task = self.task = MapTask(fn)
        task.signals.progress.connect(lambda done, total: self._progress(task, done, total))
        task.signals.done.connect(lambda result, error: self._finished(task, on_done, result, error))
        self.progress.setRange(0, 0)  # busy until the first progress report
        self.progress.setFormat(f"{text}: %p%")
        self.progress.setToolTip(text)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.status.setText(text + "...")
        QtCore.QThreadPool.globalInstance().start(task)

    def busy(self) -> bool:
        return self.task is not None

    def cancel(self):
        """Ask the running task to stop. An embedding run stops after the current image and shows
        what it has; a UMAP run cannot be interrupted inside umap, so its result is dropped."""
        if self.task is not None and not self.task.cancelled:
            self.task.cancel()
            self.status.setText("Cancelling...")

    def _progress(self, task, done, total):
        if task is self.task:
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(done)

    def _finished(self, task, on_done, result, error):
        if task is not self.task:
            return
        self.task = None
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        if error:
            self.status.setText(f"Failed: {error}")
        elif result is None or (task.cancelled and not getattr(result, "cancelled", False)):
            self.status.setText("Cancelled.")
        else:
            on_done(result)
