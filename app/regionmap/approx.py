"""Every region's k nearest neighbours for the suspects vote on large tables, without the N^2 x D
all-pairs product: candidates come from an inverted-file index (faiss ``IndexIVFFlat``) over the
unit embeddings' principal directions, and are then reranked by the exact cosine in all
dimensions. The result is exact wherever the true neighbours are among the candidates; the bench
reports how often that holds against the exact vote."""
from __future__ import annotations

import numpy as np

from app.regionmap.neighbours import principal_cosine

DIMS = 64  # principal directions the candidates are searched on (32: 57% of the exact neighbours found on
# features with a 1/i spectrum, 64: 80%, for ~25% more time)
CANDIDATES = 2  # candidates per neighbour, reranked in all dimensions
NPROBE = 8  # inverted lists visited per query (of about sqrt(N))
SEARCH_ROWS = 16384  # query rows per faiss search: its threads split them (smaller calls were 2x slower)
RERANK_ROWS = 1024  # query rows per rerank step: a (rows, k x CANDIDATES, D) gather


def ivf_index(R, seed=0):
    """An inner-product IVF index of the unit rows ``R``, about sqrt(N) lists."""
    import faiss

    n, d = R.shape
    lists = int(np.clip(round(np.sqrt(n)), 1, 4096))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed  # the same table gives the same lists, hence the same ranking
    index.cp.min_points_per_centroid = 1  # small tables: fewer points than 39 per list is fine
    index.cp.max_points_per_centroid = 64  # k-means on a sample of 64 rows per list: lists as good, 4x less work
    index.train(R)
    index.add(R)
    index.nprobe = min(NPROBE, lists)
    return index


def rerank(X, inv, rows, cand, k):
    """The ``k`` candidates of each query row with the largest exact cosine (self and the -1
    padding faiss gives when it finds too few left out): (indices, similarities), nearest first."""
    valid = (cand >= 0) & (cand != rows[:, None])
    safe = np.where(valid, cand, 0)
    sims = np.matmul(X[safe], X[rows][:, :, None])[:, :, 0]  # (rows, c): one gathered dot per candidate
    sims *= inv[safe]
    sims *= inv[rows, None]
    sims[~valid] = -np.inf
    order = np.lexsort((safe, -sims), axis=1)[:, :k]  # by similarity, ties by index: deterministic
    return np.take_along_axis(safe, order, axis=1), np.take_along_axis(sims, order, axis=1)


def approximate_all_nearest(X, inv, k=10, progress=None, cancelled=None):
    """(indices (N, k), cosine similarities (N, k)) of every row's k nearest (self excluded),
    nearest first; ``None`` if ``cancelled()`` turned true. A row with fewer than k candidates
    found keeps -inf similarities in its last places (never in practice: NPROBE lists hold
    hundreds of rows)."""
    n = len(X)
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    R = principal_cosine(X, inv, DIMS)
    if cancelled is not None and cancelled():
        return None
    index = ivf_index(R)
    wanted = min(n, k * CANDIDATES + 1)
    idx, sim = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
    for a in range(0, n, SEARCH_ROWS):
        b = min(a + SEARCH_ROWS, n)
        _, cand = index.search(R[a:b], wanted)
        for c in range(a, b, RERANK_ROWS):
            if cancelled is not None and cancelled():
                return None
            d = min(c + RERANK_ROWS, b)
            idx[c:d], sim[c:d] = rerank(X, inv, np.arange(c, d), cand[c - a:d - a], k)
            if progress is not None:
                progress(d, n)
    return idx, sim
