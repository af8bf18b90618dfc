"""Crash recovery journal (Qt-free): unsaved boxes are mirrored into a file in the user's state
folder after every edit, and the file is removed once everything is saved. If the program dies
first, the next start offers to bring the work back."""
from __future__ import annotations

import json
import os
from pathlib import Path

from app.atomic import atomic_write_text
from app.regions import Box


def journal_path() -> Path:
    base = os.environ.get("ROISCOPE_STATE_DIR") or os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "roiscope" / "recovery.json"


def write(opened, docs) -> None:
    """Mirror the unsaved documents; remove the journal when there are none."""
    dirty = {str(d.path): [_box_dict(b) for b in d.boxes] for d in docs if d.dirty}
    path = journal_path()
    if not dirty:
        clear()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"opened": [str(p) for p in opened], "docs": dirty}))  # ASCII: paths of any bytes (surrogate escapes) survive


def read():
    """(opened paths, {image path: [Box]}) or None when there is nothing to recover."""
    path = journal_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        docs = {p: [Box.from_corners(*b["corners"], label=b["label"], attrs=tuple(map(tuple, b.get("attrs", []))))
                    for b in boxes] for p, boxes in data["docs"].items()}
        return [Path(p) for p in data["opened"]], docs
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an unreadable journal is not worth a crash at start-up


def clear() -> None:
    try:
        journal_path().unlink()
    except FileNotFoundError:
        pass


def _box_dict(b):
    return {"corners": list(b.corners()), "label": b.label, "attrs": [list(a) for a in b.attrs]}
