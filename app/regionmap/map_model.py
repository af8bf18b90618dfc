"""RegionMap: what the map panel binds to. The table, its 2-D projection, hit tests (point under
the cursor, lasso, rectangle), similar regions, label suspects and edits of single regions."""
from __future__ import annotations

import numpy as np

from app.regionmap.colors import Coloring, color_by
from app.regionmap.neighbours import CosineIndex
from app.regionmap.projection import PCAProjection, make_projection
from app.regionmap.suspects import Suspects, find_suspects
from app.regionmap.table import RegionTable


def points_in_polygon(xy, polygon) -> np.ndarray:
    """Indices of the points inside a closed polygon (even-odd rule), vectorised over points; the
    polygon's bounding box is tested first so a small lasso on a big map costs little."""
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    if len(poly) < 3 or len(xy) == 0:
        return np.zeros(0, np.int64)
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    cand = np.flatnonzero((xy[:, 0] >= lo[0]) & (xy[:, 0] <= hi[0]) & (xy[:, 1] >= lo[1]) & (xy[:, 1] <= hi[1]))
    x, y = xy[cand, 0].astype(np.float64), xy[cand, 1].astype(np.float64)
    inside = np.zeros(len(cand), bool)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0)):
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < at)
    return cand[inside]


class RegionMap:
    def __init__(self, table: RegionTable, method="pca", projection=None, progress=None, options=None):
        """``options``: the projection's (``make_projection``); ``progress(done, total)``: UMAP's
        epochs report to it."""
        self.table = table
        self.index = CosineIndex(table.embeddings)
        self.suspects: Suspects | None = None
        self.projection = projection
        if projection is None:
            self.projection = make_projection(method, **(options or {})) if len(table) >= 4 or method == "pca" else PCAProjection()
            self.xy = (self.projection.fit_transform(table.embeddings, progress) if len(table)
                       else np.zeros((0, 2), np.float32))
        else:
            self.xy = projection.transform(table.embeddings) if len(table) else np.zeros((0, 2), np.float32)

    def __len__(self):
        return len(self.table)

    # ------------------------------------------------------------ hit tests
    def point_at(self, x, y, rx, ry) -> int | None:
        """The point nearest to (x, y) within an ellipse of radii (rx, ry) in data units (the
        caller converts its pick radius in pixels), or None."""
        if not len(self.xy) or rx <= 0 or ry <= 0:
            return None
        d = ((self.xy[:, 0] - x) / rx) ** 2 + ((self.xy[:, 1] - y) / ry) ** 2
        i = int(np.argmin(d))
        return i if d[i] <= 1.0 else None

    def in_polygon(self, polygon) -> np.ndarray:
        return points_in_polygon(self.xy, polygon)

    def in_rect(self, x0, y0, x1, y1) -> np.ndarray:
        (x0, x1), (y0, y1) = sorted((x0, x1)), sorted((y0, y1))
        xy = self.xy
        return np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1))

    # ------------------------------------------------------------ queries
    def index_of(self, image, box_id) -> int | None:
        return self.table.index_of(image, box_id)

    def regions(self, indices) -> list[tuple[str, int]]:
        return [self.table.key(int(i)) for i in indices]

    def similar(self, i, k=10):
        return self.index.nearest(i, k)

    def compute_suspects(self, k=10, weighted=False, progress=None, cancelled=None) -> Suspects | None:
        found = find_suspects(self.table, k, weighted, self.index, progress, cancelled)
        if found is not None:
            self.suspects = found
        return found

    def coloring(self, mode) -> Coloring:
        return color_by(mode, self.table, self.suspects)

    # ------------------------------------------------------------ edits
    def update_region(self, image, box_id, corners=None, label=None, embedding=None) -> int:
        """A box was added, moved or relabelled in the window: its row changes and, with a new
        embedding, its point moves by the fitted projection's ``transform`` (the others stay).
        Returns the region's index."""
        i = self.index_of(image, box_id)
        if i is None:
            if embedding is None or corners is None:
                raise ValueError(f"{image}: box {box_id} is not on the map; a new region needs corners and an embedding")
            i = self.table.append(str(image), box_id, label or "", corners, embedding)
            self.index = CosineIndex(self.table.embeddings)
            self.xy = np.concatenate([self.xy, self.projection.transform(self.table.embeddings[i:i + 1])])
        else:
            self.table.set_row(i, corners, label, embedding)
            if embedding is not None:
                self.index.update(i, self.table.embeddings[i])
                self.xy[i] = self.projection.transform(self.table.embeddings[i:i + 1])[0]
        self.suspects = None  # neighbours' votes changed: recompute on demand
        return i

    def remove_region(self, image, box_id) -> bool:
        i = self.index_of(image, box_id)
        if i is None:
            return False
        keep = self.table.remove([i])
        self.xy = self.xy[keep]
        self.index = CosineIndex(self.table.embeddings)
        self.suspects = None
        return True
