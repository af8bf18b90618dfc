"""Loading a user's own Keras model as a feature extractor (Qt-free; roi_core knows no files)."""
from __future__ import annotations

from pathlib import Path

from roi_core.backbones import ModelExtractor

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_user_model(path) -> ModelExtractor:
    """A ``.keras`` / ``.h5`` model, loaded with ``safe_mode`` (no arbitrary code from the file)."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ValueError(f"{path}: expected a .keras or .h5 model file")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many kinds; the user needs the file named and why
        raise ValueError(f"{path}: cannot load this model ({exc})") from exc
    extractor = ModelExtractor(model, name=f"model: {path.name}")
    if not extractor.layers():
        raise ValueError(f"{path}: the model has no layer with a 4-D (batch, h, w, channels) output")
    return extractor

