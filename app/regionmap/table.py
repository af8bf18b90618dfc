"""RegionTable: one row per region of a dataset (image, box id, label, corners, embedding)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np


def image_key(path) -> str:
    """The form image paths are compared in: absolute and normalised, as text."""
    return os.path.normpath(os.path.abspath(os.fspath(path)))


@dataclass
class RegionTable:
    images: np.ndarray  # (N,) object: image path as given
    box_ids: np.ndarray  # (N,) int64: the box's stable id in its image (export: region_id)
    labels: np.ndarray  # (N,) object: str
    corners: np.ndarray  # (N, 4) float32: x1, y1, x2, y2 in image pixels
    embeddings: np.ndarray  # (N, D) float32: the pooled tensor flattened, as exported
    settings: dict = field(default_factory=dict)  # extractor, layer, op, output_size, ...
    _index: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        n = len(self.images)
        self.images = np.asarray(self.images, dtype=object).reshape(n)
        self.box_ids = np.asarray(self.box_ids, dtype=np.int64).reshape(n)
        self.labels = np.asarray([str(v) for v in self.labels], dtype=object).reshape(n)
        self.corners = np.asarray(self.corners, dtype=np.float32).reshape(n, 4)
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        if self.embeddings.ndim != 2 or len(self.embeddings) != n:
            raise ValueError(f"embeddings must be ({n}, D), got shape {self.embeddings.shape}")

    @classmethod
    def empty(cls, dim=0, settings=None):
        return cls(np.array([], object), np.zeros(0, np.int64), np.array([], object),
                   np.zeros((0, 4), np.float32), np.zeros((0, dim), np.float32), dict(settings or {}))

    @classmethod
    def concat(cls, tables, settings=None):
        tables = [t for t in tables if len(t)]
        if not tables:
            return cls.empty(settings=settings)
        dims = {t.dim for t in tables}
        if len(dims) > 1:
            raise ValueError(f"embeddings of different sizes cannot share a map: {sorted(dims)}")
        return cls(np.concatenate([t.images for t in tables]), np.concatenate([t.box_ids for t in tables]),
                   np.concatenate([t.labels for t in tables]), np.concatenate([t.corners for t in tables]),
                   np.concatenate([t.embeddings for t in tables]), dict(settings or tables[0].settings))

    def __len__(self):
        return len(self.images)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    def key(self, i) -> tuple[str, int]:
        return str(self.images[i]), int(self.box_ids[i])

    def index_of(self, image, box_id) -> int | None:
        if self._index is None:  # normalise each distinct path once, not once per region
            keys = {p: image_key(p) for p in set(self.images)}
            self._index = {(keys[p], b): i for i, (p, b) in enumerate(zip(self.images, self.box_ids.tolist()))}
        return self._index.get((image_key(image), int(box_id)))

    def set_row(self, i, corners=None, label=None, embedding=None):
        if corners is not None:
            self.corners[i] = corners
        if label is not None:
            self.labels[i] = str(label)
        if embedding is not None:
            self.embeddings[i] = np.asarray(embedding, np.float32).reshape(-1)

    def append(self, image, box_id, label, corners, embedding) -> int:
        """Add one region (a box drawn after the map was built); copies the arrays once."""
        embedding = np.asarray(embedding, np.float32).reshape(1, -1)
        if len(self.embeddings) and embedding.shape[1] != self.dim:
            raise ValueError(f"embedding must have {self.dim} values, got {embedding.shape[1]}")
        self.images = np.append(self.images, np.array([image], object))
        self.box_ids = np.append(self.box_ids, np.int64(box_id))
        self.labels = np.append(self.labels, np.array([str(label)], object))
        self.corners = np.concatenate([self.corners, np.asarray(corners, np.float32).reshape(1, 4)])
        self.embeddings = np.concatenate([self.embeddings, embedding]) if len(self.embeddings) else embedding
        self._index = None
        return len(self) - 1

    def remove(self, indices):
        keep = np.ones(len(self), bool)
        keep[np.asarray(indices, int)] = False
        self.images, self.box_ids, self.labels = self.images[keep], self.box_ids[keep], self.labels[keep]
        self.corners, self.embeddings = self.corners[keep], self.embeddings[keep]
        self._index = None
        return keep
