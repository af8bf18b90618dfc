"""Shared pieces of the annotation formats: box construction, names with dots, text that holds
any path bytes."""
from __future__ import annotations

import json
import math
from pathlib import Path

from app.regions import Box


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and the key or line."""


def finite_box(source, where, xa, ya, xb, yb, label, attrs=()):
    """A Box from raw numbers, or an AnnotationError naming ``source`` and ``where``. Finite
    values beyond float32 are kept (``Box.problem()`` names them) so write-back loses nothing."""
    try:
        values = [float(v) for v in (xa, ya, xb, yb)]
    except (TypeError, ValueError, OverflowError) as exc:
        raise AnnotationError(f"{source}: {where}: coordinates must be numbers, got {[xa, ya, xb, yb]!r}") from exc
    if not all(math.isfinite(v) for v in values):
        raise AnnotationError(f"{source}: {where}: coordinates must be finite, got {values}")
    xa, ya, xb, yb = values
    corners = (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
    # "orig": the corners as read, so writers can tell an untouched box and keep its source text
    return Box(*corners, str(label), 0, tuple(attrs) + (("orig", corners_key(corners)),))


def bounds(source, where, points):
    """(x1, y1, x2, y2) of a list of [x, y] points, or an AnnotationError."""
    try:
        xs = [float(p[0]) for p in points]
        ys = [float(p[1]) for p in points]
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise AnnotationError(f"{source}: {where}: points must be [x, y] numbers, got {points!r}") from exc
    if not xs:
        raise AnnotationError(f"{source}: {where}: no points")
    return min(xs), min(ys), max(xs), max(ys)


def relative_stem(image, root) -> Path:
    """The image path relative to ``root`` without its suffix; the bare stem when outside it.
    Only the last suffix goes: ``x_png.rf.abc.jpg`` -> ``x_png.rf.abc``."""
    image = Path(image)
    try:
        return image.resolve().relative_to(Path(root).resolve()).with_suffix("")
    except (ValueError, TypeError):
        return Path(image.stem)


def with_extension(stem: Path, ext: str) -> Path:
    """``stem`` + ``ext`` without treating a dot inside the stem as a suffix
    (``Path("a.rf.x").with_suffix(".txt")`` would give ``a.rf.txt`` and merge images)."""
    return stem.with_name(stem.name + ext)


def number_text(v: float) -> str:
    """Shortest text that reads back as the same float ("12" for 12.0)."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def json_text(data, indent=2) -> str:
    """JSON that always encodes as UTF-8: text holding undecodable path bytes (surrogate escapes,
    from non-UTF-8 file names) is written with ASCII escapes, which read back to the same str."""
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, indent=indent, ensure_ascii=True)
    return text


def encode_text(text: str) -> bytes:
    """UTF-8, with undecodable path bytes written back as the bytes they came from."""
    return text.encode("utf-8", "surrogateescape")


def printable(name) -> str:
    """A path or name safe to put in XML or a message: undecodable bytes as \\xNN."""
    return str(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def unchanged(box: Box) -> bool:
    """True when the box still has the corners it was read with (see ``origin_attrs``)."""
    orig = box.attr("orig")
    return orig is not None and orig == corners_key(box.corners())


def corners_key(corners) -> str:
    return ",".join(repr(float(v)) for v in corners)


def with_attrs(box: Box, **values) -> Box:
    """The box with string attributes set (structured values JSON-encoded)."""
    attrs = dict(box.attrs)
    for k, v in values.items():
        attrs[k] = v if isinstance(v, str) else json.dumps(v)
    return Box(box.x1, box.y1, box.x2, box.y2, box.label, box.id, tuple(attrs.items()))


def attr_json(box: Box, key, default=None):
    value = box.attr(key)
    if value is None:
        return default
    try:
        return json.loads(value)
    except ValueError:
        return default


FLOAT32_NOTE = "coordinates beyond float32 (kept; skipped by pooling and export)"
