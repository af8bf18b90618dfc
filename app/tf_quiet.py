"""Import TensorFlow without its C++ start-up lines on the terminal.

TensorFlow 2.21 writes lines such as "All log messages before absl::InitializeLog() is called
are written to STDERR", "Could not find cuda drivers" and the CPU-feature notice straight to
file descriptor 2 while it is imported, before its log level (``TF_CPP_MIN_LOG_LEVEL``) is in
force for them, and looking for a GPU logs an error when there is a CUDA build but no driver.
So the import and the device search run with fd 2 sent to a temporary file; what it caught is shown
only when the user asks for it (``--verbose``) or when the import fails. Afterwards
``TF_CPP_MIN_LOG_LEVEL=2`` (unless the user set it) keeps TensorFlow's info and warning lines
away; errors still show.
"""
from __future__ import annotations

import importlib
import os
import sys
import tempfile


def import_tensorflow(verbose: bool = False, module: str = "tensorflow"):
    """Import ``module`` (TensorFlow) quietly unless ``verbose``; returns the module."""
    if module in sys.modules:
        return sys.modules[module]
    if verbose:
        return importlib.import_module(module)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    with tempfile.TemporaryFile() as caught:
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            tf = importlib.import_module(module)
            if hasattr(tf, "config"):  # finding the devices logs too ("failed call to cuInit")
                tf.config.list_physical_devices()
            return tf
        except BaseException:
            _restore(saved)
            saved = None
            caught.seek(0)
            os.write(2, caught.read())  # the failure's context, in the order it was written
            raise
        finally:
            if saved is not None:
                _restore(saved)


def _restore(saved: int) -> None:
    sys.stderr.flush()  # Python-level text written during the import belongs to the capture
    os.dup2(saved, 2)
    os.close(saved)
