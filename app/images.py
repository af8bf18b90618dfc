"""Reading images for display and feature extraction (Qt-free).

Pillow reads the header (size, EXIF orientation, page count) without decoding pixels, so the
pixel limit is checked before any memory is spent; OpenCV decodes (fast, 16-bit aware). Both
``read_image`` and ``image_size`` take the orientation from the same header, so boxes drawn on
the displayed image and sizes used by normalized formats (YOLO) always agree.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
EXTRACTION_MAX_SIDE = 2048  # feature extraction runs on a copy no larger than this
MAX_PIXELS = 200_000_000  # decompression-bomb guard; ROISCOPE_MAX_PIXELS overrides it
MAX_PIXELS_ENV = "ROISCOPE_MAX_PIXELS"
EXIF_ORIENTATION = 0x0112
MULTI_PAGE_FORMATS = {"TIFF", "PNG", "WEBP"}

# Pillow only reads headers here; the limit RoIScope applies is max_pixels() below, which the user
# can raise. Pillow's own guard would refuse (with no size in hand) above twice its limit.
Image.MAX_IMAGE_PIXELS = None

# How to turn the stored pixels into the displayed ones, per EXIF orientation (as
# PIL.ImageOps.exif_transpose): 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90
# clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: a[::-1].swapaxes(0, 1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: a[:, ::-1].swapaxes(0, 1),
}


class ImageReadError(ValueError):
    pass


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: stored size, EXIF orientation (1-8), number of pages/frames."""

    width: int
    height: int
    orientation: int = 1
    pages: int = 1
    format: str | None = None  # Pillow's name for it, None when only OpenCV could read it

    @property
    def displayed_size(self) -> tuple[int, int]:
        """(width, height) once the orientation is applied (5-8 swap the sides)."""
        return (self.height, self.width) if self.orientation >= 5 else (self.width, self.height)


def is_image(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def max_pixels() -> int:
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value <= 0:
        raise ImageReadError(f"{MAX_PIXELS_ENV} must be a positive number of pixels, got {text!r}")
    return value


def probe(path, data: bytes | None = None) -> ImageInfo | None:
    """The header of ``path`` (or of its bytes ``data``, already read) without decoding pixels;
    None when Pillow does not know the file (then OpenCV, the decoder of record, decides).
    OSError (permission) becomes ImageReadError."""
    try:
        with Image.open(Path(path) if data is None else io.BytesIO(data)) as im:
            width, height = im.size
            if im.format == "TIFF":  # Pillow reports a TIFF's size already turned: take the tags
                width, height = im.tag_v2.get(256, width), im.tag_v2.get(257, height)
            return ImageInfo(int(width), int(height), _orientation(im), _pages(im), im.format)
    except OSError as exc:
        if not isinstance(exc, Image.UnidentifiedImageError) and exc.errno is not None:
            raise ImageReadError(f"{path}: cannot read ({exc.strerror})") from exc
        return None
    except Exception:  # a header Pillow chokes on: let OpenCV try
        return None


def _orientation(im) -> int:
    try:
        if im.format == "PNG":  # PNG's getexif() decodes the whole image to look past IDAT
            exif = Image.Exif()
            if im.info.get("exif"):
                exif.load(im.info["exif"])
        else:
            exif = im.getexif()
        value = int(exif.get(EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block is not a broken image
        return 1
    return value if 1 <= value <= 8 else 1


def _pages(im) -> int:
    """Pages of a TIFF, frames of an animated PNG or WebP. A phone's JPEG is often an MPO whose
    second "frame" is a preview or depth map: not pages anyone lost, so not counted."""
    if im.format not in MULTI_PAGE_FORMATS:
        return 1
    try:
        return max(int(getattr(im, "n_frames", 1)), 1)
    except Exception:
        return 1


def check_pixel_limit(path, info: ImageInfo) -> None:
    limit = max_pixels()
    if info.width * info.height > limit:
        raise ImageReadError(
            f"{path}: {info.width}x{info.height} pixels ({info.width * info.height / 1e6:.0f} Mpx) is over the "
            f"limit of {limit / 1e6:.0f} Mpx that guards against decompression bombs; to open it anyway, set "
            f"{MAX_PIXELS_ENV} to a larger number of pixels (e.g. {MAX_PIXELS_ENV}={info.width * info.height})")


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """The displayed image for stored pixels ``img`` with EXIF ``orientation`` (1-8)."""
    turn = _ORIENT.get(orientation)
    return np.ascontiguousarray(img if turn is None else turn(img))


def _checked_header(path, data: bytes | None = None) -> ImageInfo | None:
    """``probe``, with the pixel limit checked before anything is decoded."""
    info = probe(path, data)
    if info is not None:
        check_pixel_limit(path, info)
    return info


def load_image(path) -> tuple[np.ndarray, ImageInfo]:
    """(RGB uint8 (H, W, 3) as displayed, header info). EXIF orientation applied; 16-bit scaled;
    gray/RGBA converted; the pixel limit checked from the header before decoding."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path}: the file is empty")
        info = _checked_header(path)
        data = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile copes with non-ASCII paths
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return _decode(path, data, info)


def decode_image_bytes(data: bytes, name) -> tuple[np.ndarray, ImageInfo]:
    """``load_image`` for an image's bytes read elsewhere (object storage); ``name`` (its URI)
    is what messages name. Same orientation, pixel limit and errors."""
    if not data:
        raise ImageReadError(f"{name}: the file is empty")
    info = _checked_header(name, data)
    return _decode(name, np.frombuffer(data, np.uint8), info)


def _decode(path, data: np.ndarray, info: ImageInfo | None) -> tuple[np.ndarray, ImageInfo]:
    if info is not None and info.format == "TIFF" and info.orientation != 1:
        data = _tiff_unturned(data)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)  # UNCHANGED ignores EXIF: applied below
    if img is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
    if info is None:
        info = ImageInfo(img.shape[1], img.shape[0])
    return apply_orientation(_to_rgb8(img), info.orientation), info


def _tiff_unturned(data: np.ndarray) -> np.ndarray:
    """The TIFF bytes with the first page's orientation tag set to 1, so OpenCV returns the stored
    pixels, which ``apply_orientation`` then turns. libtiff's RGBA reader (OpenCV's path for 8-bit
    files) turns pixels by itself and OpenCV then fails on orientations 5-8, while its other
    paths and Pillow's 16-bit decoder do not turn them: patching the tag gives one behaviour."""
    raw = bytearray(data)
    order = {b"II": "little", b"MM": "big"}.get(bytes(raw[:2]))
    if order is None or int.from_bytes(raw[2:4], order) != 42:  # BigTIFF (43) stays as it is
        return data
    ifd = int.from_bytes(raw[4:8], order)
    count = int.from_bytes(raw[ifd:ifd + 2], order) if ifd + 2 <= len(raw) else 0
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if entry + 12 <= len(raw) and int.from_bytes(raw[entry:entry + 2], order) == EXIF_ORIENTATION:
            raw[entry + 8:entry + 10] = (1).to_bytes(2, order)
    return np.frombuffer(raw, np.uint8)


def _to_rgb8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)  # in place: no second copy of a huge image


def read_image(path) -> np.ndarray:
    """RGB uint8 (H, W, 3) as displayed (see ``load_image``)."""
    return load_image(path)[0]


def image_size(path) -> tuple[int, int]:
    """(width, height) of an image as displayed, EXIF orientation applied (orientations 5-8 swap
    the sides), read from the header when possible. Formats with normalized coordinates (YOLO)
    refer to this size, as Ultralytics does."""
    path = Path(path)
    info = probe(path)
    if info is not None:
        return info.displayed_size
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ImageReadError(f"{path}: cannot read the image to get its size")
    return img.shape[1], img.shape[0]


def capped_for_extraction(img: np.ndarray, max_side: int = EXTRACTION_MAX_SIDE):
    """A copy no larger than ``max_side`` and the factor (original px per copy px)."""
    h, w = img.shape[:2]
    factor = max(h, w) / max_side
    if factor <= 1:
        return img, 1.0
    small = cv2.resize(img, (round(w / factor), round(h / factor)), interpolation=cv2.INTER_AREA)
    return small, w / small.shape[1]


def list_images(paths) -> list[Path]:
    """Image files among ``paths`` (files, or folders scanned non-recursively), sorted."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.is_file() and is_image(q))
        elif is_image(p):
            found.append(p)
    return found
