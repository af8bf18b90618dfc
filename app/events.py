"""A tiny event emitter for the Qt-free models (napari's model/view split without Qt): the GUI
connects callbacks; the models never know who listens."""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager


class EventEmitter:
    def __init__(self):
        self._callbacks = defaultdict(list)
        self._blocked = set()

    def connect(self, name: str, callback) -> None:
        self._callbacks[name].append(callback)

    def emit(self, name: str, **kwargs) -> None:
        if name in self._blocked:
            return
        for callback in list(self._callbacks[name]):
            callback(**kwargs)

    @contextmanager
    def blocked(self, *names):
        """Emit nothing for ``names`` inside the block (for bulk updates that end in one event)."""
        before = set(self._blocked)
        self._blocked.update(names)
        try:
            yield
        finally:
            self._blocked = before
