"""Reading images for display and feature extraction (Qt-free)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
EXTRACTION_MAX_SIDE = 2048  # feature extraction runs on a copy no larger than this


class ImageReadError(ValueError):
    pass


def is_image(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path) -> np.ndarray:
    """RGB uint8 (H, W, 3). EXIF orientation applied; 16-bit scaled; gray/RGBA converted."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    data = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile copes with non-ASCII paths
    if data.size == 0:
        raise ImageReadError(f"{path}: the file is empty")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)  # in place: no second copy of a huge image
    orientation = _exif_orientation(data)
    if orientation == 3:
        img = cv2.rotate(img, cv2.ROTATE_180)
    elif orientation == 6:
        img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    elif orientation == 8:
        img = cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return np.ascontiguousarray(img)


def _exif_orientation(data: np.ndarray) -> int:
    """The EXIF orientation tag of a JPEG (1 when absent). IMREAD_UNCHANGED ignores EXIF."""
    raw = data.tobytes()
    if raw[:2] != b"\xff\xd8":
        return 1
    pos = raw.find(b"Exif\x00\x00")
    if pos < 0:
        return 1
    tiff = raw[pos + 6:]
    if len(tiff) < 8:
        return 1
    order = "little" if tiff[:2] == b"II" else "big"
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    for i in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * i: ifd + 14 + 12 * i]
        if len(entry) == 12 and int.from_bytes(entry[:2], order) == 0x0112:
            return int.from_bytes(entry[8:10], order)
    return 1


def image_size(path) -> tuple[int, int]:
    """(width, height) of an image as displayed, EXIF orientation applied (orientations 5-8 swap
    the sides), read from the header when possible. Formats with normalized coordinates (YOLO)
    refer to this size, as Ultralytics does."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(32)
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(f"{path}: cannot read the image to get its size")
    h, w = img.shape[:2]
    return (h, w) if _exif_orientation(data) in (5, 6, 7, 8) else (w, h)


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
