"""Switch eager calls between their compiled kernels and the uncompiled paths."""
from contextlib import contextmanager

from roi_core import ops


@contextmanager
def eager_compiled(compiled):
    """Small eager calls normally skip the compiled kernels (see EAGER_COMPILE_MIN_OUTPUTS);
    tests run them both ways."""
    saved = ops.EAGER_COMPILE_MIN_OUTPUTS
    ops.EAGER_COMPILE_MIN_OUTPUTS = 0 if compiled else 1 << 62
    try:
        yield
    finally:
        ops.EAGER_COMPILE_MIN_OUTPUTS = saved
