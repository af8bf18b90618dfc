"""Exact cosine nearest neighbours by chunked matrix products. No normalised copy of the
embeddings is made: each chunk's dot products are scaled by the inverse norms in place, so the
extra memory is one (chunk, N) block (about half the embeddings' size at most)."""
from __future__ import annotations

import numpy as np

from app.regionmap.blas import one_blas_thread


def inverse_norms(X) -> np.ndarray:
    """1 / ||x|| per row; 0 for a zero row (its cosine with anything is 0)."""
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    with np.errstate(divide="ignore"):
        inv = np.where(norms > 0, 1.0 / norms, 0.0)
    return inv.astype(np.float32)


def top_k_columns(S, k, block=64) -> np.ndarray:
    """Column indices of the k largest values of each row of ``S`` (unordered). Rows are cut into
    blocks of ``block`` columns: each of a row's k largest values lies in one of the k blocks with
    the largest maxima (fewer than k blocks can hold a larger value), so the exact answer comes
    from partitioning N/block block maxima and then k*block candidates: about 3x faster than
    ``argpartition`` over whole rows at N = 100k."""
    rows, n = S.shape
    whole = n // block * block
    if whole < block * k * 2:  # too few blocks to save anything
        return np.argpartition(S, n - k, axis=1)[:, n - k:]
    maxima = S[:, :whole].reshape(rows, -1, block).max(axis=2)
    top_blocks = np.argpartition(maxima, maxima.shape[1] - k, axis=1)[:, -k:]
    cols = (top_blocks[:, :, None] * block + np.arange(block)).reshape(rows, -1)
    if whole < n:  # the ragged tail is always a candidate
        cols = np.concatenate([cols, np.broadcast_to(np.arange(whole, n), (rows, n - whole))], axis=1)
    values = np.take_along_axis(S, cols, axis=1)
    pick = np.argpartition(values, values.shape[1] - k, axis=1)[:, -k:]
    return np.take_along_axis(cols, pick, axis=1)


def principal_cosine(X, inv, dims, chunk=8192) -> np.ndarray:
    """Rows scaled to unit length, projected on the ``dims`` directions that hold most of them
    (eigenvectors of the uncentred second moment, summed in chunks): ``(N, dims)`` float32. Cosine
    on these approximates cosine on ``X`` where the embeddings have fewer effective dimensions
    than ``dims``, at ``dims / D`` of the cost of every all-pairs product that follows."""
    d = X.shape[1]
    moment = np.zeros((d, d), np.float64)
    with one_blas_thread():
        for a in range(0, len(X), chunk):
            block = X[a:a + chunk] * inv[a:a + chunk, None]
            moment += block.T @ block  # a float32 product (a float64 one costs ~10x), summed in float64
        _, vectors = np.linalg.eigh(moment)
        basis = vectors[:, ::-1][:, :dims].astype(np.float32)
        out = np.empty((len(X), basis.shape[1]), np.float32)
        for a in range(0, len(X), chunk):
            out[a:a + chunk] = (X[a:a + chunk] * inv[a:a + chunk, None]) @ basis
    out *= inverse_norms(out)[:, None]  # unit rows: their products are the cosines, no scaling pass
    return out


class CosineIndex:
    def __init__(self, embeddings, inv_norms=None):
        self.X = np.asarray(embeddings, np.float32)
        self.inv = inverse_norms(self.X) if inv_norms is None else inv_norms

    def __len__(self):
        return len(self.X)

    def update(self, i, embedding):
        """After ``X[i]`` changed (the same array the table holds)."""
        self.inv[i] = inverse_norms(np.asarray(embedding, np.float32).reshape(1, -1))[0]

    def chunk_rows(self, budget_bytes=None) -> int:
        n = max(len(self.X), 1)
        budget = budget_bytes or max(self.X.nbytes // 2, 16 << 20)
        return int(max(1, min(4096, budget // (4 * n))))

    def similarities(self, a, b) -> np.ndarray:
        """(b - a, N) cosine similarities of rows a..b with every row."""
        sims = self.X[a:b] @ self.X.T
        sims *= self.inv[a:b, None]
        sims *= self.inv[None, :]
        return sims

    def nearest(self, i, k=10) -> tuple[np.ndarray, np.ndarray]:
        """(indices, cosine distances) of the k regions nearest to region ``i``, nearest first,
        ``i`` itself left out."""
        k = min(k, len(self.X) - 1)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        with one_blas_thread():  # memory-bound: a second thread gained nothing on shared cores
            sims = self.X @ self.X[i]
        sims *= self.inv
        sims *= self.inv[i]
        sims[i] = -np.inf
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.lexsort((top, -sims[top]))]  # by similarity, ties by index: deterministic
        return top, (1.0 - sims[top]).astype(np.float32)

    def all_nearest(self, k=10, progress=None, cancelled=None, chunk=None):
        """(indices (N, k), similarities (N, k)) of every region's k nearest (self excluded),
        nearest first; ``None`` if ``cancelled()`` turned true."""
        n = len(self.X)
        k = min(k, n - 1)
        idx = np.zeros((n, max(k, 0)), np.int64)
        sim = np.zeros((n, max(k, 0)), np.float32)
        if k <= 0:
            return idx, sim
        step = chunk or self.chunk_rows()
        for a in range(0, n, step):
            if cancelled is not None and cancelled():
                return None
            b = min(a + step, n)
            sims = self.similarities(a, b)
            rows = np.arange(b - a)
            sims[rows, a + rows] = -np.inf
            top = top_k_columns(sims, k)
            top_sims = np.take_along_axis(sims, top, axis=1)
            order = np.lexsort((top, -top_sims), axis=1)
            idx[a:b] = np.take_along_axis(top, order, axis=1)
            sim[a:b] = np.take_along_axis(top_sims, order, axis=1)
            if progress is not None:
                progress(b, n)
        return idx, sim
