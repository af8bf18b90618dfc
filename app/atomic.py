"""Atomic file writes: a temporary file in the same folder, fsync, then os.replace.

Modes: a new file gets the mode the umask gives (as ``open`` would), a replaced file keeps its
own. ``tempfile.mkstemp`` would make every file 0600, so the temporary file is opened here with
mode 0666 and the kernel applies the umask; reading the umask would need ``os.umask``, which is
process-wide and not thread-safe.
"""
from __future__ import annotations

import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path


def temp_path(path) -> Path:
    """A fresh hidden name beside ``path`` for writing it atomically."""
    path = Path(path)
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def open_temp(path) -> tuple[int, Path]:
    """(fd, temporary path) beside ``path``, created exclusively with the umask's mode."""
    for _ in range(100):
        tmp = temp_path(path)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: cannot create a temporary file beside it")


def commit(tmp, path) -> None:
    """Rename the finished ``tmp`` onto ``path``; an existing ``path`` keeps its mode."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def remove_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@contextmanager
def atomic_file(path, mode="wb", **open_kwargs):
    """A handle whose content replaces ``path`` only if the block ends without error: written
    to a temporary name beside it, synced, then renamed; on any failure the temporary goes."""
    path = Path(path)
    fd, tmp = open_temp(path)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        commit(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
