"""Feature extractors: image -> (features (1, h, w, C), stride), with named channels.

* ``pixels``: the image itself, stride 1.
* ``filters``: a fixed, interpretable filter bank (Gaussian derivatives, Gabor orientations and
  scales, Laplacian, colour opponents); no weights, runs offline. The default.
* Keras Applications (VGG16, ResNet50, MobileNetV2, EfficientNetB0) with ImageNet weights that
  Keras downloads on first use; any intermediate layer.
* ``ModelExtractor``: any ``keras.Model`` (the application loads the user's file), any layer.

Images are ``(H, W, 3)`` RGB arrays, ``uint8`` or float in ``[0, 1]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class Features:
    features: np.ndarray  # (1, h, w, C) float32
    stride: float  # input pixels per feature cell
    channel_names: list[str] = field(default_factory=list)

    @property
    def spatial_scale(self) -> float:
        return 1.0 / self.stride


def as_rgb_float(image) -> np.ndarray:
    """RGB float32 in [0, 1], shape (H, W, 3)."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {img.shape}")
    img = img[:, :, :3]
    if np.issubdtype(img.dtype, np.integer):  # already in [0, 1]: one conversion, no clip pass
        return img.astype(np.float32) * np.float32(1.0 / np.iinfo(img.dtype).max)
    return np.clip(img.astype(np.float32, copy=False), 0.0, 1.0)


class Extractor:
    name = "extractor"

    def layers(self) -> list[str]:
        return ["output"]

    @property
    def default_layer(self) -> str:
        return self.layers()[-1]

    def extract(self, image, layer: str | None = None) -> Features:
        raise NotImplementedError


class PixelsExtractor(Extractor):
    name = "pixels"

    def layers(self):
        return ["rgb"]

    def extract(self, image, layer=None):
        img = as_rgb_float(image)
        return Features(img[None], 1.0, ["red", "green", "blue"])


class FilterBankExtractor(Extractor):
    """Deterministic filter bank; the layer picks the stride ("stride 1/2/4/8")."""

    name = "filters"
    STRIDES = (1, 2, 4, 8)

    def layers(self):
        return [f"stride {s}" for s in self.STRIDES]

    @property
    def default_layer(self):
        return "stride 4"

    def extract(self, image, layer=None):
        layer = layer or self.default_layer
        if layer not in self.layers():
            raise ValueError(f"layer must be one of {self.layers()}, got {layer!r}")
        stride = int(layer.split()[-1])
        rgb = as_rgb_float(image)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        maps, names = [], []
        maps.append(gray)
        names.append("intensity")
        r, g, b = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
        maps += [r - g, b - (r + g) / 2]
        names += ["red-green", "blue-yellow"]
        for sigma in (1.0, 2.0, 4.0):
            smooth = cv2.GaussianBlur(gray, (0, 0), sigma)
            maps += [cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)]
            names += [f"d/dx s{sigma:g}", f"d/dy s{sigma:g}"]
            maps.append(cv2.Laplacian(smooth, cv2.CV_32F, ksize=3))
            names.append(f"laplacian s{sigma:g}")
        for wavelength in (4.0, 8.0):
            for angle in (0, 45, 90, 135):
                kernel = cv2.getGaborKernel((int(wavelength * 2) | 1,) * 2, wavelength / 2, np.deg2rad(angle), wavelength, 0.5, 0, ktype=cv2.CV_32F)
                kernel -= kernel.mean()
                maps.append(np.abs(cv2.filter2D(gray, cv2.CV_32F, kernel)))
                names.append(f"gabor {angle}deg l{wavelength:g}")
        if stride > 1:  # shrink each map before stacking: the full-size stack is the slow part
            h, w = gray.shape
            size = (max(w // stride, 1), max(h // stride, 1))
            maps = [cv2.resize(m, size, interpolation=cv2.INTER_AREA) for m in maps]
        stack = np.stack(maps, axis=-1).astype(np.float32, copy=False)
        return Features(stack[None], float(stride), names)


class ModelExtractor(Extractor):
    """Any Keras model: features are the output of the chosen layer (4-D layers only)."""

    def __init__(self, model, name="model", preprocess=None):
        self.model = model
        self.name = name
        self._preprocess = preprocess or (lambda x: x * 255.0)
        self._submodels = {}

    def layers(self):
        names = []
        for lyr in self.model.layers:
            try:
                shape = lyr.output.shape
            except (AttributeError, ValueError):
                continue
            if len(shape) == 4 and not lyr.name.startswith("input"):
                names.append(lyr.name)
        return names

    def _submodel(self, layer):
        import keras

        if layer not in self._submodels:
            if layer not in self.layers():
                raise ValueError(f"layer must be one of the model's 4-D layers, got {layer!r}")
            self._submodels[layer] = keras.Model(self.model.inputs, self.model.get_layer(layer).output)
        return self._submodels[layer]

    def extract(self, image, layer=None):
        layer = layer or self.default_layer
        rgb = as_rgb_float(image)
        x = self._preprocess(rgb[None].astype(np.float32))
        feats = np.asarray(self._submodel(layer)(x, training=False), dtype=np.float32)
        stride = rgb.shape[0] / feats.shape[1]
        return Features(feats, float(stride), [f"{layer}:{i}" for i in range(feats.shape[-1])])


KERAS_APPLICATIONS = {
    "vgg16": ("VGG16", "vgg16"),
    "resnet50": ("ResNet50", "resnet"),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2"),
    "efficientnet_b0": ("EfficientNetB0", "efficientnet"),
}


class WeightsUnavailable(RuntimeError):
    """ImageNet weights could not be downloaded (offline): the message says where to put them."""


def keras_application(name: str, weights="imagenet") -> ModelExtractor:
    """A Keras Applications backbone without its classifier head."""
    import keras

    if name not in KERAS_APPLICATIONS:
        raise ValueError(f"extractor must be one of {sorted(KERAS_APPLICATIONS)}, got {name!r}")
    cls_name, module = KERAS_APPLICATIONS[name]
    cls = getattr(keras.applications, cls_name)
    try:
        model = cls(weights=weights, include_top=False, input_shape=(None, None, 3))
    except Exception as exc:  # Keras raises a bare Exception on a failed download
        cache = "~/.keras/models/"
        raise WeightsUnavailable(
            f"Could not load ImageNet weights for {cls_name} ({exc}). Without network access, download "
            f"the '{cls_name}' no-top weight file (.h5) on another machine and put it in {cache}"
        ) from exc
    preprocess = getattr(keras.applications, module).preprocess_input
    return ModelExtractor(model, name=name, preprocess=lambda x: preprocess(x * 255.0))


def builtin_extractors() -> list[str]:
    return ["filters", "pixels", *KERAS_APPLICATIONS]


def get_extractor(name: str) -> Extractor:
    if name == "filters":
        return FilterBankExtractor()
    if name == "pixels":
        return PixelsExtractor()
    return keras_application(name)
