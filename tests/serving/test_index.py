"""Retrieval: exact top-k ranks like a full sort with seen items excluded; faiss reaches its measured recall."""

from __future__ import annotations

import numpy as np
import pytest

from cliper.serving.index import ExactIndex, FaissIndex, build_faiss_index, recall_at_k, top_k


def test_top_k_orders_by_score_then_lowest_row_and_drops_excluded():
    s = np.array([0.5, 2.0, 2.0, -1.0, 2.0, 0.5], dtype=np.float32)
    assert top_k(s.copy(), 2).tolist() == [1, 2]  # the tie at the boundary goes to the lowest rows
    assert top_k(s.copy(), 4).tolist() == [1, 2, 4, 0]
    assert top_k(s.copy(), 100).tolist() == [1, 2, 4, 0, 5, 3]
    s[[1, 4]] = -np.inf
    assert top_k(s, 100).tolist() == [2, 0, 5, 3]  # excluded rows never appear, even when k is large


def test_exact_index_equals_a_full_sort():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((500, 16)).astype(np.float32)
    index = ExactIndex(items)
    for _ in range(20):
        q = rng.standard_normal(16).astype(np.float32)
        seen = rng.choice(500, size=30, replace=False)
        rows, scores = index.search(q, 25, seen)
        full = items @ q
        full[seen] = -np.inf
        assert rows.tolist() == np.argsort(-full, kind="stable")[:25].tolist()
        assert np.allclose(scores, full[rows]) and not set(rows.tolist()) & set(seen.tolist())


def _clustered(n, d, n_users, seed=0):
    """Item vectors around a few hundred centres, like trained embeddings; users near item centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, d)).astype(np.float32)
    items = centres[rng.integers(0, 64, n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    users = centres[rng.integers(0, 64, n_users)] + 0.5 * rng.standard_normal((n_users, d)).astype(np.float32)
    lengths = rng.integers(0, 8, n_users)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([rng.choice(n, size=m, replace=False) for m in lengths])
    return items.astype(np.float32), users.astype(np.float32), indptr, indices.astype(np.int64)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_faiss_index_reaches_its_measured_recall_and_excludes_seen(tmp_path, kind):
    pytest.importorskip("faiss", reason="the faiss extra is not installed")
    items, users, indptr, indices = _clustered(4000, 16, 300)
    doc = build_faiss_index(items, users, indptr, indices, kind, tmp_path / "index.faiss", k=10,
                            target_recall=0.95, n_queries=100)
    assert doc["kind"] == kind and doc["recall"]["value"] >= 0.95 and doc["recall"]["k"] == 10
    index = FaissIndex.read(tmp_path / "index.faiss", doc, items.shape[0])
    exact = ExactIndex(items)
    # measured again on users the build did not sample from: recall is a property, not a fit
    held = np.arange(200, 300)
    excludes = [indices[indptr[u]:indptr[u + 1]] for u in held]
    assert recall_at_k(exact, index, users[held], excludes, 10) >= 0.9
    for u, ex in zip(held[:20], excludes[:20]):
        rows, scores = index.search(users[u], 10, ex)
        assert not set(rows.tolist()) & set(ex.tolist())
        assert np.all(np.diff(scores) <= 1e-6) and np.allclose(scores, items[rows] @ users[u], atol=1e-4)
