"""One export at a time per output folder: a lock file holding the owner's pid.

The lock is an OS file lock (``flock``; ``msvcrt.locking`` on Windows) on that file, not the
file's existence: the kernel drops it when its process dies, so the leftover file of a crashed
run is simply taken over, and no pid needs to be judged alive or dead.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from app.atomic import remove_quietly

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

LOCK_NAME = ".roiscope-export.lock"


class OutputInUse(RuntimeError):
    """Another run is writing into the same output folder."""


def _try_lock(fd) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _owner(path) -> str:
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        text = ""
    return f"process {text}" if text.isdigit() else "another process"


def acquire(folder) -> int:
    """An open descriptor holding the lock of ``folder``; OutputInUse when another run has it."""
    path = Path(folder) / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise OutputInUse(f"{folder}: another export is writing into this folder ({_owner(path)}, lock "
                              f"file {path}); wait for it to finish or choose another output folder")
        try:  # the previous owner may have removed the file between our open and our lock
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            return fd
        os.close(fd)


def release(folder, fd) -> None:
    path = Path(folder) / LOCK_NAME
    if fcntl is not None:  # removed while still held; acquire() checks it locked the live file
        remove_quietly(path)
    os.close(fd)
    if fcntl is None:  # Windows cannot remove an open file
        remove_quietly(path)


@contextmanager
def output_lock(folder):
    fd = acquire(folder)
    try:
        yield Path(folder) / LOCK_NAME
    finally:
        release(folder, fd)
