"""Region map computations (Qt-free): PCA, neighbours, suspects, hit tests, bulk plans, edits."""
from pathlib import Path

import numpy as np
import pytest

from app.project import Box, ImageDoc
from app.regionmap.bulk import delete_plan, group_by_image, relabel_plan
from app.regionmap.map_model import RegionMap, points_in_polygon
from app.regionmap.neighbours import CosineIndex, top_k_columns
from app.regionmap.projection import PCAProjection
from app.regionmap.suspects import vote
from app.regionmap.table import RegionTable


def table_of(X, labels=None, images=None):
    n = len(X)
    return RegionTable(images or [f"img{i // 4}.png" for i in range(n)], [i % 4 + 1 for i in range(n)],
                       labels or ["a"] * n, np.tile([0, 0, 10, 10], (n, 1)), X)


@pytest.mark.parametrize("offset", [3.0, 1e4], ids=["near-zero mean", "mean 1e4 x the spread"])
def test_pca_matches_svd_of_centred_data(offset):
    # A mean far larger than the spread (ReLU features) must not cost the one-pass Gram matrix
    # its precision.
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((500, 12)) * np.linspace(5, 0.1, 12) + offset).astype(np.float32)
    proj = PCAProjection(chunk=64).fit(X)  # several chunks: the accumulation is exercised
    got = proj.transform(X)
    centred = X.astype(np.float64) - X.astype(np.float64).mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    want = centred @ vt[:2].T
    for c in range(2):  # a component is defined up to its sign
        sign = np.sign(np.dot(got[:, c], want[:, c]))
        np.testing.assert_allclose(got[:, c] * sign, want[:, c], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(proj.variance, s[:2] ** 2 / (len(X) - 1), rtol=1e-4)


def test_pca_finds_a_planted_direction_and_handles_one_dimension():
    rng = np.random.default_rng(2)
    direction = np.zeros(8, np.float32)
    direction[[2, 5]] = [0.6, 0.8]
    X = rng.standard_normal((300, 1)).astype(np.float32) * 10 * direction + rng.standard_normal((300, 8)).astype(np.float32) * 0.1
    proj = PCAProjection().fit(X)
    assert abs(float(np.dot(proj.axes[:, 0], direction))) > 0.999
    flat = PCAProjection().fit(np.arange(6, dtype=np.float32).reshape(6, 1))
    xy = flat.transform(np.arange(6, dtype=np.float32).reshape(6, 1))
    assert xy.shape == (6, 2) and np.all(xy[:, 1] == 0)


def brute_force_knn(X, k):
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    return np.argsort(-S, axis=1, kind="stable")[:, :k], S


@pytest.mark.parametrize("n", [50, 3000])  # 3000: the block top-k path (more than 2k blocks)
def test_neighbours_match_brute_force(n):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, 16)).astype(np.float32)
    idx, S = brute_force_knn(X.astype(np.float64), 7)
    index = CosineIndex(X)
    got_idx, got_sim = index.all_nearest(7, chunk=97)
    np.testing.assert_array_equal(got_idx, idx)
    np.testing.assert_allclose(got_sim, np.take_along_axis(S, idx, 1), atol=1e-5)
    one, dist = index.nearest(11, 7)
    np.testing.assert_array_equal(one, idx[11])
    np.testing.assert_allclose(dist, 1 - S[11, idx[11]], atol=1e-5)


def test_top_k_columns_is_exact_with_ties_and_a_ragged_tail():
    rng = np.random.default_rng(4)
    S = rng.integers(0, 50, (20, 64 * 40 + 13)).astype(np.float32)  # many ties, tail of 13
    got = np.sort(np.take_along_axis(S, top_k_columns(S, 9), 1), axis=1)
    want = np.sort(S, axis=1)[:, -9:]
    np.testing.assert_array_equal(got, want)


def test_zero_embedding_has_no_nan_distances():
    X = np.array([[0, 0], [1, 0], [0, 1]], np.float32)
    idx, sim = CosineIndex(X).all_nearest(2)
    assert np.isfinite(sim).all()


def test_vote_scores_and_suggests_the_majority_other_label():
    labels = np.array(["cat", "cat", "dog", "dog", "dog"], object)
    idx = np.array([[1, 2, 3], [0, 2, 3], [3, 4, 0], [2, 4, 1], [2, 3, 0]])
    sim = np.array([[0.9, 0.8, 0.7], [0.9, 0.5, 0.5], [0.9, 0.9, 0.1], [0.9, 0.9, 0.2], [0.9, 0.8, 0.1]], np.float32)
    s = vote(labels, idx, sim)
    np.testing.assert_allclose(s.score, [2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3], rtol=1e-6)
    assert list(s.suggested) == ["dog", "dog", "cat", "cat", "cat"]
    assert list(s.order[:2]) == [0, 1]
    w = vote(labels, idx, sim, weighted=True)
    np.testing.assert_allclose(w.score[0], (0.8 + 0.7) / 2.4, rtol=1e-6)
    np.testing.assert_allclose(w.score[2], 0.1 / 1.9, rtol=1e-6)
    assert w.suggested[2] == "cat"


def test_lasso_and_rectangle_select_the_points_inside():
    xy = np.array([[0.5, 0.5], [2, 2], [1.5, 0.2], [0.1, 1.9], [3, 3]], np.float32)
    # An L-shaped lasso: (2, 2) is in its bounding box but outside the shape.
    poly = [(0, 0), (2.5, 0), (2.5, 1), (1, 1), (1, 2.5), (0, 2.5)]
    assert sorted(points_in_polygon(xy, poly)) == [0, 2, 3]
    m = RegionMap(table_of(np.eye(5, 3, dtype=np.float32) + 0.1))
    m.xy = xy
    assert sorted(m.in_rect(3.5, 1.8, 1.8, 3.5)) == [1, 4]
    assert m.point_at(2.05, 2.0, 0.1, 0.1) == 1 and m.point_at(2.5, 2.5, 0.1, 0.1) is None


def test_a_moved_box_moves_its_point_with_the_fitted_projection():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    m = RegionMap(table_of(X.copy()))
    axes, before = m.projection.axes.copy(), m.xy.copy()
    image, box_id = m.table.key(7)
    new = rng.standard_normal(6).astype(np.float32) * 3
    i = m.update_region(image, box_id, corners=(1, 2, 30, 40), embedding=new)
    assert i == 7 and np.array_equal(m.projection.axes, axes)  # not refitted
    np.testing.assert_allclose(m.xy[7], (new - m.projection.mean) @ axes, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.delete(m.xy, 7, 0), np.delete(before, 7, 0))
    cos = X @ new / np.linalg.norm(X, axis=1)
    cos[7] = -np.inf
    assert m.similar(7, 1)[0][0] == int(np.argmax(cos))  # the index follows the new embedding
    j = m.update_region("new.png", 1, corners=(0, 0, 5, 5), label="z", embedding=new)
    assert j == 40 and m.index_of("new.png", 1) == 40 and len(m.xy) == 41
    assert m.remove_region("new.png", 1) and len(m.xy) == 40 and m.index_of("new.png", 1) is None


def test_bulk_relabel_plan_groups_per_image_and_skips_unchanged_and_missing():
    a, b = ImageDoc(Path("a.png")), ImageDoc(Path("b.png"))
    for doc in (a, b):
        doc.loaded = True
        doc.add(Box(0, 0, 5, 5, "cat"))
        doc.add(Box(1, 1, 6, 6, "dog"))
    docs = {"a.png": a, "b.png": b}
    regions = [("a.png", 1), ("b.png", 2), ("a.png", 2), ("a.png", 1), ("b.png", 9), ("c.png", 1)]
    assert group_by_image(regions) == {"a.png": [1, 2], "b.png": [2, 9], "c.png": [1]}
    plan = relabel_plan(docs.get, regions, "dog")
    assert [(doc.path.name, old.id, new.label) for doc, old, new in plan.changes] == [("a.png", 1, "dog")]
    assert plan.missing == [("b.png", 9), ("c.png", 1)]
    gone = delete_plan(docs.get, regions)
    assert [(doc.path.name, bid) for doc, bid in gone.changes] == [("a.png", 1), ("a.png", 2), ("b.png", 2)]


def test_umap_projection_separates_clusters_and_transforms_new_points():
    from app.regionmap.projection import UMAPProjection, umap_available

    assert umap_available(), "umap-learn is in the dev extra: make test installs it"
    rng = np.random.default_rng(6)
    centres = np.eye(3, 10, dtype=np.float32) * 5 + 1
    X = np.concatenate([c + rng.normal(0, 0.2, (30, 10)).astype(np.float32) for c in centres])
    proj = UMAPProjection(n_neighbors=10, random_state=0)
    xy = proj.fit_transform(X)
    assert xy.shape == (90, 2) and np.isfinite(xy).all()
    means = np.stack([xy[k * 30:(k + 1) * 30].mean(axis=0) for k in range(3)])
    nearest_mean = np.argmin(((xy[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest_mean == np.repeat(np.arange(3), 30)).mean() > 0.95
    new = proj.transform(centres[1:2] + 0.05)
    assert np.argmin(((new - means) ** 2).sum(-1)) == 1


def test_principal_directions_keep_the_cosine_neighbours_of_low_rank_embeddings():
    # Embeddings with 8 effective dimensions in 200: cosine on 32 principal directions finds the
    # same neighbours as on all 200.
    from app.regionmap.neighbours import CosineIndex, principal_cosine

    rng = np.random.default_rng(3)
    X = (rng.normal(size=(400, 8)) @ rng.normal(size=(8, 200))).astype(np.float32)
    full = CosineIndex(X)
    Y = principal_cosine(X, full.inv, 32)
    assert Y.shape == (400, 32) and np.allclose(np.linalg.norm(Y, axis=1), 1, atol=1e-5)
    exact_idx, _ = full.all_nearest(5)
    reduced_idx, _ = CosineIndex(Y).all_nearest(5)
    np.testing.assert_array_equal(np.sort(reduced_idx, axis=1), np.sort(exact_idx, axis=1))


def test_approximate_neighbours_are_reranked_by_exact_cosine():
    # Clustered embeddings with 12 effective dimensions in 300 (3000 rows: 55 IVF lists, 8 visited):
    # nearly every true neighbour is found, every returned similarity is the exact cosine in all
    # 300 dimensions, nearest first, and no row is its own neighbour.
    from app.regionmap.approx import approximate_all_nearest

    rng = np.random.default_rng(4)
    centres = rng.normal(size=(20, 12)) * 3
    low = centres[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, 12))
    X = (low @ rng.normal(size=(12, 300))).astype(np.float32)
    full = CosineIndex(X)
    exact_idx, _ = full.all_nearest(5)
    idx, sim = approximate_all_nearest(X, full.inv, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact_idx, idx)])
    assert recall >= 0.95, f"recall {recall:.3f}"
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(sim, np.einsum("ij,ikj->ik", U, U[idx]), atol=1e-5)
    assert np.all(np.diff(sim, axis=1) <= 0) and not np.any(idx == np.arange(3000)[:, None])


def test_the_map_ranks_a_large_table_on_approximate_neighbours(monkeypatch):
    # The panel's suspects (RegionMap.compute_suspects hands its exact index in) must take the
    # approximate path above the size limit too, or 100k regions take minutes.
    from app.regionmap import suspects as mod

    calls = []
    real = mod.approximate_all_nearest
    monkeypatch.setattr(mod, "approximate_all_nearest", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    monkeypatch.setattr(mod, "EXACT_LIMIT", 0)
    X = np.random.default_rng(5).normal(size=(200, 16)).astype(np.float32)
    found = RegionMap(table_of(X, labels=["a", "b"] * 100)).compute_suspects(5)
    assert calls == [1] and found.score.shape == (200,)
