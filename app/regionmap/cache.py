"""On-disk embeddings cache: one ``.npz`` per image, keyed by the image's content, the pooling
settings and the boxes, so reopening a folder is instant and only changed images recompute.

Location: ``$ROISCOPE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/roiscope/embeddings`` (by default
``~/.cache/roiscope/embeddings``). Entries are written atomically; a damaged entry is a miss.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from app.atomic import atomic_write_bytes

CACHE_VERSION = 1  # bump when the embedding computation changes meaning


def cache_dir() -> Path:
    if os.environ.get("ROISCOPE_CACHE_DIR"):
        return Path(os.environ["ROISCOPE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "roiscope" / "embeddings"


def content_hash(path, chunk=1 << 20) -> str:
    """Hash of the file's bytes (not its name or date: a copied folder still hits)."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def extractor_identity(name) -> str:
    """A user's model file is named by path; its size and date say when it changed."""
    path = Path(str(name))
    if path.suffix.lower() in (".keras", ".h5") and path.is_file():
        st = path.stat()
        return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return str(name)


def cache_key(content: str, settings: dict, corners) -> str:
    payload = json.dumps({
        "v": CACHE_VERSION, "content": content, "settings": settings,
        "boxes": np.asarray(corners, np.float32).reshape(-1, 4).tolist(),
    }, sort_keys=True)
    return hashlib.blake2b(payload.encode(), digest_size=20).hexdigest()


class EmbeddingCache:
    def __init__(self, folder=None):
        self.folder = Path(folder) if folder is not None else cache_dir()
        self.hits = self.misses = 0

    def path(self, key) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def load(self, key) -> np.ndarray | None:
        path = self.path(key)
        try:
            with np.load(path) as data:
                emb = data["embeddings"].astype(np.float32, copy=False)
        except (OSError, KeyError, ValueError, EOFError):  # absent or damaged: recompute
            self.misses += 1
            return None
        self.hits += 1
        return emb

    def store(self, key, embeddings) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, embeddings=np.asarray(embeddings, np.float32))
        atomic_write_bytes(path, buf.getvalue())
