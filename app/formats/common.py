"""Shared pieces of the annotation formats."""
from __future__ import annotations

import math
from pathlib import Path

from app.regions import Box


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and the key or line."""


def finite_box(source, where, xa, ya, xb, yb, label, attrs=()):
    """A Box from raw numbers, or an AnnotationError naming ``source`` and ``where``."""
    try:
        values = [float(v) for v in (xa, ya, xb, yb)]
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{source}: {where}: coordinates must be numbers, got {[xa, ya, xb, yb]!r}") from exc
    if not all(math.isfinite(v) for v in values):
        raise AnnotationError(f"{source}: {where}: coordinates must be finite, got {values}")
    return Box.from_corners(*values, label=label, attrs=attrs)


def relative_stem(image, root) -> Path:
    """The image path relative to ``root`` without its suffix; the bare stem when outside it."""
    image = Path(image)
    try:
        return image.resolve().relative_to(Path(root).resolve()).with_suffix("")
    except (ValueError, TypeError):
        return Path(image.stem)


def number_text(v: float) -> str:
    """Shortest text that reads back as the same float ("12" for 12.0)."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)

