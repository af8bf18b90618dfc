"""Peak resident memory of this process while a call runs (sampled by a background thread)."""
from __future__ import annotations

import threading
import time

import psutil


def peak_rss_during(fn, *args, interval=0.001):
    """(result, peak bytes above the level before the call, peak bytes of the process)."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(interval)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = fn(*args)
    finally:
        done.set()
        sampler.join()
    return result, peak[0] - base, peak[0]
