"""`roiscope export` shows RoIScope's own output: TensorFlow's C++ start-up lines are held back
unless --verbose asks for them or the import fails."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

COFFEE = Path(__file__).resolve().parents[2] / "resources" / "samples" / "coffee.png"
TF_NOISE = ("absl::InitializeLog", "cuda", "cpu_feature_guard", "oneDNN", "cuInit", "rebuild TensorFlow")


def _env():
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def test_export_stderr_has_no_tensorflow_start_up_lines(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "app", "export", str(COFFEE), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "exported 2 regions from 1 images" in proc.stdout
    assert [n for n in TF_NOISE if n.lower() in proc.stderr.lower()] == [], proc.stderr


@pytest.fixture
def noisy(tmp_path):
    (tmp_path / "noisy_ok.py").write_text("import os\nos.write(2, b'C++ NOISE\\n')\n")
    (tmp_path / "noisy_bad.py").write_text("import os\nos.write(2, b'why it failed\\n')\nraise ImportError('broken build')\n")
    return tmp_path


def _run(folder, module, verbose):
    code = (f"import sys; sys.path.insert(0, {str(folder)!r}); from app.tf_quiet import import_tensorflow; "
            f"import_tensorflow({verbose}, {module!r}); print('after')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())


def test_start_up_lines_are_held_back_shown_with_verbose_and_replayed_on_failure(noisy):
    quiet = _run(noisy, "noisy_ok", False)
    assert quiet.returncode == 0 and "after" in quiet.stdout and "NOISE" not in quiet.stderr
    loud = _run(noisy, "noisy_ok", True)
    assert "C++ NOISE" in loud.stderr
    failed = _run(noisy, "noisy_bad", False)
    assert failed.returncode == 1
    assert "why it failed" in failed.stderr and "ImportError: broken build" in failed.stderr
    assert failed.stderr.index("why it failed") < failed.stderr.index("ImportError")


def test_map_and_headless_subcommands_have_no_tensorflow_start_up_lines(tmp_path):
    # `map` builds extractors and `suspects` reaches roi_core; their parsers have no --verbose,
    # so the CLI quiets the import for them. A missing input fails with RoIScope's own message.
    for args in (["map", str(tmp_path / "missing")], ["suspects", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "s.csv")]):
        proc = subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, env=_env())
        assert proc.returncode != 0 and "missing" in proc.stderr, proc.stderr[-2000:]
        assert [n for n in TF_NOISE if n.lower() in proc.stderr.lower()] == [], proc.stderr
