import shutil
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples"


@pytest.fixture
def samples(tmp_path):
    """A writable copy of the bundled sample images and their labelme sidecars."""
    d = tmp_path / "samples"
    shutil.copytree(SAMPLES, d)
    return d
