"""Ray's own notices that say nothing about an export, kept off the terminal unless --verbose
(as TensorFlow's start-up lines are, see ``app.tf_quiet``):

- "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt
  out ..." when a new local instance starts (Ray 2.59+): a Python logger of Ray's, raised to
  ERROR while ``ray.init`` runs.
- "Actor with class name: 'MapWorker(...)' ... has constructor arguments in the object store
  and max_restarts > 0 ...": the driver's C++ core worker writes it to file descriptor 2 for
  every actor Ray Data starts (ray-project/ray#57733: the arguments are Ray Data's own
  references, which it keeps alive while the pool runs; a test kills an actor and sees it
  restarted). Ray has no switch for that line alone: ``RAY_BACKEND_LOG_LEVEL=fatal`` hides it
  but makes every Ray process print a line saying it was set. So while the pipeline runs, fd 2
  goes through a pipe that drops that line and passes everything else on as it comes (progress
  bar, warnings, the workers' forwarded output). Ray's driver log file keeps the line.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading

AUTH_NOTICES_LOGGER = "ray._private.authentication.authentication_token_setup"
ACTOR_ARGUMENTS_NOTICE = re.compile(rb"[^\n]*has constructor arguments in the object store and max_restarts > 0[^\n]*\n?")


@contextlib.contextmanager
def auth_notice_held_back(verbose: bool):
    """Around ``ray.init``: Ray's token-authentication notice only with ``verbose``."""
    if verbose:
        yield
        return
    notices = logging.getLogger(AUTH_NOTICES_LOGGER)
    level = notices.level
    notices.setLevel(logging.ERROR)
    try:
        yield
    finally:
        notices.setLevel(level)


@contextlib.contextmanager
def actor_notices_dropped(active: bool):
    """While the pipeline runs: fd 2 without Ray's actor-arguments line (see above)."""
    if not active:
        yield
        return
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    terminal = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    forwarder = threading.Thread(target=_forward, args=(read_end, terminal), name="ray-notices", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)  # the pipe's last write end closes: the forwarder reads to its end
        forwarder.join(timeout=10)
        if not forwarder.is_alive():  # else a child still holds the pipe: the forwarder keeps the fd
            os.close(terminal)


def _forward(read_end: int, terminal: int) -> None:
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(1 << 16):  # C++ writes each log line whole, in one write
            data = ACTOR_ARGUMENTS_NOTICE.sub(b"", chunk)
            try:
                while data:
                    data = data[os.write(terminal, data):]
            except OSError:
                pass  # the terminal went away: keep draining, so that no writer blocks
