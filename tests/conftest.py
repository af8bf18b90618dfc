import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path, monkeypatch):
    """The crash-recovery journal of each test goes to its own folder, never the user's."""
    monkeypatch.setenv("ROISCOPE_STATE_DIR", str(tmp_path / "state"))
