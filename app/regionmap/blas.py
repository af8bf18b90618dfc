"""BLAS threading for the map's chunked products."""
from __future__ import annotations

from functools import lru_cache

from threadpoolctl import ThreadpoolController


@lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    return ThreadpoolController()  # scans the loaded libraries once (~2 ms; a limit then costs ~20 us)


def one_blas_thread():
    """Chunked products of a few hundred MB run on one BLAS thread: on a machine whose cores are
    shared, OpenBLAS's threads wait on each other and were measured 2-4x slower than one thread
    (a 100k x 512 Gram matrix: 1.5-2.5 s with two, 0.6 s with one); on an idle machine one thread
    costs at most the second core."""
    return _controller().limit(limits=1, user_api="blas")
