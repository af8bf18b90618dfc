"""Reading images: all eight EXIF orientations in every container that carries EXIF, the
decompression-bomb limit checked from the header, multi-page files, unreadable files."""
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from app import images
from app.images import ImageReadError, image_size, load_image, read_image

# The stored pixels for a wanted displayed image, per EXIF orientation (the inverse of what a
# viewer does; written out from the EXIF table, independently of app.images).
STORED_FROM_DISPLAYED = {
    1: lambda d: d,
    2: lambda d: d[:, ::-1],
    3: lambda d: d[::-1, ::-1],
    4: lambda d: d[::-1],
    5: lambda d: d.transpose(1, 0, 2),
    6: lambda d: np.rot90(d, 1),   # the viewer turns it 90 degrees clockwise back
    7: lambda d: np.rot90(d, 2).transpose(1, 0, 2),
    8: lambda d: np.rot90(d, -1),
}


def _displayed(block=1):
    """A 3x5-block image, every block its own colour, so any flip or turn shows."""
    colours = np.array([[(40 * i + 20, 50 * j + 10, 120 + 60 * ((i + j) % 2)) for j in range(5)] for i in range(3)], np.uint8)
    return np.repeat(np.repeat(colours, block, 0), block, 1)


def _save(path, stored, orientation, fmt):
    exif = Image.Exif()
    exif[images.EXIF_ORIENTATION] = orientation
    im = Image.fromarray(np.ascontiguousarray(stored))
    if fmt == "TIFF16":  # grayscale 16-bit: another decoder path in libtiff, OpenCV and Pillow
        Image.fromarray(np.ascontiguousarray(stored[..., 1]).astype(np.uint16) * 257).save(
            path, "TIFF", tiffinfo={images.EXIF_ORIENTATION: orientation})
    elif fmt == "TIFF":
        im.save(path, fmt, tiffinfo={images.EXIF_ORIENTATION: orientation})
    elif fmt == "WEBP":
        im.save(path, fmt, exif=exif, lossless=True)
    else:
        im.save(path, fmt, exif=exif)


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("TIFF", ".tif"), ("TIFF16", ".tiff"), ("WEBP", ".webp"), ("JPEG", ".jpg")])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied(tmp_path, fmt, suffix, orientation):
    block = 16 if fmt == "JPEG" else 1
    want = _displayed(block)
    path = tmp_path / f"o{orientation}{suffix}"
    _save(path, STORED_FROM_DISPLAYED[orientation](want), orientation, fmt)
    got = read_image(path)
    if fmt == "TIFF16":
        want = np.repeat(want[..., 1:2], 3, axis=2)
        np.testing.assert_array_equal(got, want)
        assert image_size(path) == (want.shape[1], want.shape[0])
        return
    with Image.open(path) as im:  # the test's table agrees with Pillow's viewer logic
        pillow_view = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert got.shape == want.shape
    assert image_size(path) == (want.shape[1], want.shape[0])
    if fmt == "JPEG":  # lossy: compare block centres
        centres = (slice(block // 2, None, block), slice(block // 2, None, block))
        assert np.abs(got[centres].astype(int) - want[centres]).max() < 12
        assert np.abs(pillow_view[centres].astype(int) - want[centres]).max() < 12
    else:
        np.testing.assert_array_equal(pillow_view, want)
        np.testing.assert_array_equal(got, want)


def _png_header_only(width, height):
    """A tiny PNG whose header claims ``width x height`` (the pixel data is a stub)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_from_the_header(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(30000, 30000))
    decoded = []
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: decoded.append(a) or None)
    with pytest.raises(ImageReadError) as exc:
        read_image(path)
    message = str(exc.value)
    assert "bomb.png" in message and "30000x30000" in message and "ROISCOPE_MAX_PIXELS" in message
    assert not decoded  # refused before any decoding
    assert image_size(path) == (30000, 30000)  # the header alone is harmless


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), np.zeros((20, 30, 3), np.uint8))
    monkeypatch.setenv("ROISCOPE_MAX_PIXELS", "599")
    with pytest.raises(ImageReadError, match="20 Mpx|30x20"):
        read_image(path)
    monkeypatch.setenv("ROISCOPE_MAX_PIXELS", "600")
    assert read_image(path).shape == (20, 30, 3)
    monkeypatch.setenv("ROISCOPE_MAX_PIXELS", "lots")
    with pytest.raises(ImageReadError, match="ROISCOPE_MAX_PIXELS"):
        read_image(path)


def test_multi_page_tiff_reports_its_pages(tmp_path):
    path = tmp_path / "stack.tif"
    pages = [np.full((8, 9, 3), v, np.uint8) for v in (10, 200, 90)]
    assert cv2.imwritemulti(str(path), pages)
    rgb, info = load_image(path)
    assert info.pages == 3 and rgb.shape == (8, 9, 3) and rgb[0, 0, 0] == 10


def test_unreadable_file_is_named(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images.np, "fromfile", denied)
    monkeypatch.setattr(images.Image, "open", denied)
    with pytest.raises(ImageReadError, match="locked.png.*Permission denied"):
        read_image(path)


def test_a_phone_jpeg_with_a_preview_frame_is_not_multi_page(tmp_path):
    path = tmp_path / "phone.jpg"
    main, preview = Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (20, 15), (0, 0, 0))
    main.save(path, "MPO", save_all=True, append_images=[preview])
    with Image.open(path) as im:
        assert im.format == "MPO" and im.n_frames == 2  # what the camera wrote
    rgb, info = load_image(path)
    assert info.pages == 1 and rgb.shape == (30, 40, 3) and rgb[0, 0, 0] > 150


def test_animated_webp_counts_its_frames(tmp_path):
    path = tmp_path / "anim.webp"
    frames = [Image.new("RGB", (12, 10), (v, v, v)) for v in (10, 120, 240)]
    frames[0].save(path, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert load_image(path)[1].pages == 3
