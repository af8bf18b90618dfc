"""Label suspects: regions whose nearest neighbours (cosine, on the pooled embedding) mostly carry
another label, ranked most suspect first (the idea behind FiftyOne's mistakenness and cleanlab's
label issues, in its simplest form: a k-NN vote)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from app.atomic import atomic_write_text
from app.regionmap.approx import approximate_all_nearest
from app.regionmap.neighbours import CosineIndex, inverse_norms

CSV_COLUMNS = ["image", "region_id", "label", "suggested_label", "score"]


@dataclass
class Suspects:
    score: np.ndarray  # (N,) share of the k nearest carrying another label, in [0, 1]
    suggested: np.ndarray  # (N,) object: the other label most of those carry ("" if none)
    order: np.ndarray  # (N,) region indices, most suspect first
    k: int = 10

    def rank_of(self) -> np.ndarray:
        rank = np.empty_like(self.order)
        rank[self.order] = np.arange(len(self.order))
        return rank


def vote(labels, idx, sim, weighted=False) -> Suspects:
    """Score each region from its neighbours ``idx`` (N, k) and their similarities ``sim``.
    ``weighted``: each neighbour counts by its similarity (clipped at 0) instead of 1."""
    labels = np.asarray(labels, dtype=object)
    n, k = idx.shape
    names, codes = np.unique(labels.astype(str), return_inverse=True) if n else (np.array([]), np.zeros(0, int))
    if k == 0:
        order = np.arange(n)
        return Suspects(np.zeros(n, np.float32), np.full(n, "", object), order, 0)
    nb = codes[idx]
    w = np.clip(sim, 0, None).astype(np.float64) if weighted else np.ones((n, k))
    dead = w.sum(axis=1) == 0  # every neighbour orthogonal or opposite: count them equally
    w[dead] = 1.0
    other = nb != codes[:, None]
    score = (w * other).sum(axis=1) / w.sum(axis=1)
    votes = np.zeros((n, len(names)))
    np.add.at(votes, (np.repeat(np.arange(n), k), nb.ravel()), (w * other).ravel())
    best = votes.argmax(axis=1)
    suggested = np.where(votes[np.arange(n), best] > 0, names[best], "").astype(object)
    order = np.argsort(-score, kind="stable")
    return Suspects(score.astype(np.float32), suggested, order, k)


# All-pairs neighbours cost N^2 * D: above this many multiply-adds the vote runs on approximate
# neighbours (``approx``: candidates from an IVF index on the principal directions, reranked by
# exact cosine); 100k x 512 exact takes minutes on a laptop CPU. The Similar strip stays exact.
EXACT_LIMIT = 20_000 ** 2 * 512


def find_suspects(table, k=10, weighted=False, index=None, progress=None, cancelled=None, exact=None) -> Suspects | None:
    """Suspects of every region of ``table``; ``None`` if cancelled. ``exact``: True votes on
    exact cosine neighbours (``index`` if given), False on approximate ones, None decides by size."""
    X = np.asarray(table.embeddings, np.float32)
    n, d = X.shape
    if exact is None:
        exact = n * n * d <= EXACT_LIMIT
    if exact:
        found = (index if index is not None else CosineIndex(X)).all_nearest(k, progress=progress, cancelled=cancelled)
    else:
        inv = index.inv if index is not None else inverse_norms(X)
        found = approximate_all_nearest(X, inv, k, progress=progress, cancelled=cancelled)
    return None if found is None else vote(table.labels, *found, weighted=weighted)


def suspect_rows(table, suspects: Suspects) -> list[list]:
    return [[str(table.images[i]), int(table.box_ids[i]), str(table.labels[i]), str(suspects.suggested[i]),
             f"{float(suspects.score[i]):.4f}"] for i in suspects.order]


def write_suspects_csv(path, table, suspects: Suspects) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([CSV_COLUMNS] + suspect_rows(table, suspects))
    atomic_write_text(path, buf.getvalue())
