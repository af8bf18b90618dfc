"""Figures measured in a fresh Python process (first-call latency, allocator settings that must
be set before TensorFlow starts): the probe prints its figures as JSON on its last line."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def json_from_fresh_process(module, *args, **env):
    """``python -m module args`` with TensorFlow's C++ lines off and ``env`` added; its last
    stdout line, parsed as JSON."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env),
        capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])
