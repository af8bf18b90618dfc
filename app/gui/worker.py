"""Image loading and feature extraction off the GUI thread; results are cached per
(image, extractor, layer). A cancelled or superseded job's result is dropped."""
from __future__ import annotations

import gc
import logging
import traceback

from PySide6 import QtCore

import numpy as np
import tensorflow as tf

from app.extraction import extract_features
from app.images import capped_for_extraction, read_image
from app.pooling import pool_boxes
from roi_core import _cpu_path

# roi_core's loops are per process: the first window of a session warms them for every later one.
_loops_warm_requested = False


class _Signals(QtCore.QObject):
    image_ready = QtCore.Signal(int, object, object)  # job, path, (rgb, display copy)
    features_ready = QtCore.Signal(int, object, object)  # job, key, Features
    failed = QtCore.Signal(int, object, object)  # job, path, message
    # Paths and messages travel as Python objects: a file name of non-UTF-8 bytes (surrogate
    # escapes) does not convert to a QString.


def _emit(signal, *args):
    try:
        signal.emit(*args)
    except RuntimeError:  # the window closed while this job ran: nobody to tell
        pass


class _Job(QtCore.QRunnable):
    def __init__(self, job_id, path, extractor, layer, want_image, signals, registry, warm=(), counts=(1,), shown=None):
        super().__init__()
        self.job_id, self.path, self.extractor, self.layer = job_id, path, extractor, layer
        self.warm, self.counts = tuple(warm), tuple(counts)
        self.shown = len(self.warm) if shown is None else shown
        self.want_image, self.signals, self.registry = want_image, signals, registry
        self.cancelled = False

    def run(self):
        if self.cancelled:  # superseded while queued: do not even read the file
            return
        try:
            rgb = read_image(self.path)
            capped = capped_for_extraction(rgb)  # also the display copy of a huge image
            if self.want_image:
                _emit(self.signals.image_ready, self.job_id, str(self.path), (rgb, capped[0]))
            if self.cancelled:
                return
            feats = extract_features(self.registry.get(self.extractor), rgb, self.layer, capped)
            # Trace/compile pooling here, not on the GUI thread: the ops on show before the
            # maps go out, the menu's other ops after, while the user looks at the first grid.
            self._warm(feats, self.warm[: self.shown])
            if not self.cancelled:
                _emit(self.signals.features_ready, self.job_id, (str(self.path), self.extractor, self.layer), feats)
            self._warm(feats, self.warm[self.shown :])
        except Exception as exc:  # any failure is shown to the user; the app goes on
            message = str(exc) or traceback.format_exc(limit=1)
            _emit(self.signals.failed, self.job_id, str(self.path), message)

    def _warm(self, feats, settings_list):
        # Compiled kernels are built per feature shape and per box-count bucket.
        for settings in settings_list:
            for count in self.counts:
                if self.cancelled:
                    return
                pool_boxes(feats, np.zeros((count, 4), np.float32), settings)


class _LoopWarmUp(QtCore.QRunnable):
    """Compiles roi_core's Numba loops, or loads them from their on-disk cache, where large
    pooling calls would take them (Numba installed, tensors on the CPU): the import and load take
    ~0.7 s in a new process, a first compile seconds per op, which would otherwise fall on the
    first call that pools enough boxes (85 at 7x7 on 512 channels): an image opened later, or
    boxes added on the GUI thread."""

    def run(self):
        try:
            features = tf.convert_to_tensor(np.zeros((1, 1, 1, 1), np.float32))  # as pooling converts them
            if _cpu_path.available(features):
                # Its allocations (Numba's typing tables) set off a full garbage collection, which
                # walked the ~360k objects of TensorFlow, Keras and Qt holding the GIL: the GUI
                # froze 0.3-0.6 s. Frozen, they (alive as long as the app) skip later collections.
                gc.freeze()
                _cpu_path.warm()
        except Exception:  # only a lost head start: the first large call compiles, or says why not
            logging.getLogger(__name__).warning("warming up the pooling loops failed", exc_info=True)


class FeatureService(QtCore.QObject):
    image_ready = QtCore.Signal(object, object)
    features_ready = QtCore.Signal(object, object)
    failed = QtCore.Signal(object, object)
    busy_changed = QtCore.Signal(bool)

    def __init__(self, registry, parent=None):
        super().__init__(parent)
        self.pool = QtCore.QThreadPool(self)
        self.pool.setMaxThreadCount(1)  # TensorFlow uses the cores; one job at a time
        self.cache = {}
        self.registry = registry
        self.signals = _Signals()
        self.signals.image_ready.connect(self._image_ready)
        self.signals.features_ready.connect(self._features_ready)
        self.signals.failed.connect(self._failed)
        self._job = None
        self._latest = None  # the last job started: once its maps are out it may still be warming ops
        self._next_id = 0

    def request(self, path, extractor, layer, want_image=True, warm=(), counts=(1,), shown=None):
        """Start loading ``path`` (and its features unless cached). Supersedes any running job.
        ``warm``: pooling settings to run once on the worker, for each box count in ``counts``,
        so that their first use on the GUI thread does not stop to compile; the first ``shown``
        of them (default: all) before the features are handed over, the rest after."""
        self.cancel()
        key = (str(path), extractor, layer)
        self._next_id += 1
        job = _Job(self._next_id, path, extractor, layer, want_image, self.signals, self.registry, warm, counts, shown)
        self._latest = job
        if key in self.cache and not want_image:
            self.features_ready.emit(key, self.cache[key])
            return
        self._job = job
        self.busy_changed.emit(True)
        self.pool.start(job)

    def warm_loops(self):
        """Once per process, on the worker thread: roi_core's Numba loops (see ``_LoopWarmUp``).
        Queued behind the running job and at low priority, so a job requested later runs first."""
        global _loops_warm_requested
        if not _loops_warm_requested:
            _loops_warm_requested = True
            self.pool.start(_LoopWarmUp(), -1)

    def cancel(self):
        if self._latest is not None:  # also stops a finished job's warm-up of the menu's other ops
            self._latest.cancelled = True
        if self._job is not None:
            self._job.cancelled = True
            self._job = None
            self.busy_changed.emit(False)

    def _current(self, job_id):
        return self._job is not None and self._job.job_id == job_id

    def _image_ready(self, job_id, path, rgb):
        if self._current(job_id):
            self.image_ready.emit(path, rgb)
            key = (path, self._job.extractor, self._job.layer)
            if key in self.cache:  # features already known: no need to wait for extraction
                self._job.cancelled = True
                self._job = None
                self.busy_changed.emit(False)
                self.features_ready.emit(key, self.cache[key])

    def _features_ready(self, job_id, key, feats):
        self.cache[key] = feats
        if self._current(job_id):
            self._job = None
            self.busy_changed.emit(False)
            self.features_ready.emit(key, feats)

    def _failed(self, job_id, path, message):
        if self._current(job_id):
            self._job = None
            self.busy_changed.emit(False)
            self.failed.emit(path, message)
