"""Small Qt helpers shared by the panels."""
from __future__ import annotations

import sys
import traceback
from contextlib import contextmanager


@contextmanager
def qt_signals_blocked(*objects):
    """Update widgets from the model without their change signals echoing back (as napari's)."""
    previous = [obj.blockSignals(True) for obj in objects]
    try:
        yield
    finally:
        for obj, was in zip(objects, previous):
            obj.blockSignals(was)


def shown(text: str) -> str:
    """Text safe to hand to Qt: a file name of non-UTF-8 bytes (held by Python as surrogate
    escapes) is shown with U+FFFD for its undecodable bytes, as file managers do."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def install_last_resort_handler(report):
    """Route any exception that escapes a Qt slot to ``report(message)`` (the window's banner),
    instead of a traceback on a terminal nobody reads; the process keeps running. Returns the
    previous hook so that it can be restored."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt):
            return previous(kind, value, tb)
        detail = "".join(traceback.format_exception_only(kind, value)).strip()
        try:
            report(f"Something went wrong, and RoIScope kept running; your boxes are kept.\n{detail}")
        except Exception:  # the window itself is gone: fall back to the terminal
            previous(kind, value, tb)

    sys.excepthook = hook
    return previous
