"""2-D projections of embeddings with a ``transform`` for regions edited later. PCA is exact (the
covariance's eigenvectors, accumulated in one chunked pass: no centred copy of the data); UMAP is used when
the optional ``umap-learn`` is installed."""
from __future__ import annotations

import importlib.util
import re

import numpy as np

from app.regionmap.blas import one_blas_thread

METHODS = ("pca", "umap")


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def available_methods() -> list[str]:
    return ["pca"] + (["umap"] if umap_available() else [])


class PCAProjection:
    """Principal components of ``X`` (N, D). Signs are fixed (each component's largest loading is
    positive) so the same data always gives the same picture."""

    method = "pca"

    def __init__(self, components=2, chunk=8192):
        self.components, self.chunk = components, chunk
        self.mean = self.axes = self.variance = None

    def fit(self, X) -> "PCAProjection":
        X = np.asarray(X, np.float32)
        n, d = X.shape
        if n == 0:
            raise ValueError("cannot fit a projection to zero regions")
        # One pass: the sum and the Gram matrix of the rows minus a rough centre (the first
        # chunk's mean), float32 products summed in float64. The shift keeps the products small,
        # so removing the exact mean afterwards loses no precision even when the mean is far
        # larger than the spread (ReLU features).
        shift = X[:self.chunk].mean(axis=0, dtype=np.float64).astype(np.float32)
        total, gram = np.zeros(d, np.float64), np.zeros((d, d), np.float64)
        with one_blas_thread():
            for a in range(0, n, self.chunk):
                c = X[a:a + self.chunk] - shift
                total += c.sum(axis=0, dtype=np.float64)
                gram += c.T @ c
            offset = total / n
            cov = (gram - n * np.outer(offset, offset)) / max(n - 1, 1)
            values, vectors = np.linalg.eigh(cov)  # 512 x 512: 0.05-0.1 s on one thread, 0.2-0.5 s on two
        self.mean = (shift + offset).astype(np.float32)
        order = np.argsort(values)[::-1][:self.components]
        axes = vectors[:, order]
        signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
        axes = axes * np.where(signs == 0, 1, signs)
        if axes.shape[1] < self.components:  # fewer dimensions than components: pad with zeros
            axes = np.pad(axes, ((0, 0), (0, self.components - axes.shape[1])))
        self.axes = axes.astype(np.float32)
        self.variance = np.clip(values[order], 0, None)
        return self

    def transform(self, X) -> np.ndarray:
        X = np.asarray(X, np.float32).reshape(-1, self.mean.shape[0])
        out = np.empty((len(X), self.components), np.float32)
        with one_blas_thread():
            for a in range(0, len(X), self.chunk):  # centred chunk by chunk: precise when the mean is large
                out[a:a + self.chunk] = (X[a:a + self.chunk] - self.mean) @ self.axes
        return out

    def fit_transform(self, X, progress=None) -> np.ndarray:
        """``progress``: as UMAP's (PCA is done before it would matter)."""
        return self.fit(X).transform(X)


class _EpochStream:
    """A file for umap's tqdm bar (``bar_format="{n}/{total}"``): passes each ``n/total`` it writes
    on to ``progress``. umap has no callback; its bar is the one place its epoch loop reports to.
    (Raising here to cancel would leave tqdm's global lock held: the next bar would hang.)"""

    def __init__(self, progress):
        self.progress = progress

    def write(self, text):
        match = re.search(r"(\d+)/(\d+)", text)
        if match:
            self.progress(int(match[1]), int(match[2]))

    def flush(self):
        pass


class UMAPProjection:
    """``umap.UMAP`` (cosine metric, 2-D). Slow on large sets: the GUI runs it on a worker; its
    optimisation epochs report progress. umap cannot be interrupted, so Cancel drops its result
    when it returns."""

    method = "umap"

    def __init__(self, n_neighbors=15, min_dist=0.1, random_state=None, n_epochs=None):
        if not umap_available():
            raise ValueError("UMAP needs the optional package umap-learn: pip install 'roiscope[umap]'")
        self.params = dict(n_neighbors=n_neighbors, min_dist=min_dist, random_state=random_state, n_epochs=n_epochs)
        self.model = None

    def fit(self, X, progress=None) -> "UMAPProjection":
        import umap

        X = np.asarray(X, np.float32)
        neighbors = max(2, min(self.params["n_neighbors"], len(X) - 1))
        jobs = 1 if self.params["random_state"] is not None else -1  # a seed makes umap single-threaded anyway
        bar = dict(disable=True) if progress is None else dict(disable=False, file=_EpochStream(progress), bar_format="{n}/{total}", mininterval=0.1)
        self.model = umap.UMAP(n_components=2, metric="cosine", n_jobs=jobs, tqdm_kwds=bar,
                               **{**self.params, "n_neighbors": neighbors})
        self.model.fit(X)
        return self

    def transform(self, X) -> np.ndarray:
        return np.asarray(self.model.transform(np.asarray(X, np.float32).reshape(len(X), -1)), np.float32)

    def fit_transform(self, X, progress=None) -> np.ndarray:
        self.fit(X, progress)
        return np.asarray(self.model.embedding_, np.float32)


def make_projection(method="pca", **options):
    """``options``: the projection's own (UMAP's ``n_epochs``, ``random_state``...)."""
    if method == "pca":
        return PCAProjection(**options)
    if method == "umap":
        return UMAPProjection(**options)
    raise ValueError(f"projection must be one of {METHODS}, got {method!r}")
