"""Chunked cosine kNN graphs: exact vs a dense computation, chunk-independent, cached by content."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from cliper.graphs.knn import KnnGraphCache, cached_knn_graph, hash_array, knn_graph, topk_cosine


def _features(n=50, d=8, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _dense_topk(x: np.ndarray, k: int, include_self=True):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ xn.T
    if not include_self:
        np.fill_diagonal(sim, -np.inf)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sim, idx, 1), idx


@pytest.mark.parametrize("include_self", [True, False])
def test_topk_matches_dense(include_self):
    x = _features(60, 7)
    vals, idx = topk_cosine(x, 5, chunk_size=7, include_self=include_self)
    dvals, didx = _dense_topk(x, 5, include_self)
    np.testing.assert_allclose(vals.numpy(), dvals, atol=1e-5)
    assert (idx.numpy() == didx).all()
    if include_self:
        assert (idx[:, 0].numpy() == np.arange(60)).all()  # an item is its own nearest neighbour
    else:
        assert not (idx.numpy() == np.arange(60)[:, None]).any()


def test_graph_matches_dense_sym_normalisation():
    x = _features(40, 6, seed=3)
    k = 4
    g = knn_graph(x, k=k, weighted=True, normalization="sym", chunk_size=9)
    assert sp.issparse(g) and g.shape == (40, 40) and g.nnz == 40 * k
    dvals, didx = _dense_topk(x, k)
    s = np.zeros((40, 40), dtype=np.float64)
    np.put_along_axis(s, didx, dvals, 1)
    d = s.sum(1) ** -0.5
    expected = d[:, None] * s * d[None, :]
    np.testing.assert_allclose(g.toarray(), expected, atol=1e-5)


def test_unweighted_graph_rows_are_one_over_k():
    g = knn_graph(_features(30, 5), k=6, weighted=False, normalization="sym")
    # FREEDOM's binary kNN graph: every row sum of A is k, so every entry is 1/k
    np.testing.assert_allclose(g.data, 1.0 / 6, rtol=1e-6)
    assert (np.diff(g.indptr) == 6).all()


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunk_size_does_not_change_the_graph(chunk):
    x = _features(64, 10, seed=1)
    ref = knn_graph(x, k=5, chunk_size=64)
    g = knn_graph(x, k=5, chunk_size=chunk)
    assert (g.indices == ref.indices).all() and (g.indptr == ref.indptr).all()
    np.testing.assert_allclose(g.data, ref.data, atol=1e-6)


def test_zero_rows_and_torch_input():
    x = _features(20, 4)
    x[3] = 0.0
    vals, idx = topk_cosine(torch.from_numpy(x), 3)
    assert torch.isfinite(vals).all()
    assert vals.shape == (20, 3) and idx.dtype == torch.int64


def test_k_larger_than_n_is_clamped_and_bad_k_rejected():
    vals, idx = topk_cosine(_features(4, 3), 10)
    assert idx.shape == (4, 4)
    with pytest.raises(ValueError):
        topk_cosine(_features(4, 3), 0)


def test_cache_hit_on_identical_input(tmp_path):
    x = _features(30, 6)
    cache = KnnGraphCache(tmp_path)
    g1 = cache.get(x, k=5, modality="image")
    files = sorted((tmp_path / "knn").glob("*.npz"))
    assert len(files) == 1 and cache.misses == 1 and cache.hits == 0
    g2 = cache.get(x.copy(), k=5, modality="image")
    assert cache.hits == 1 and cache.misses == 1
    assert sorted((tmp_path / "knn").glob("*.npz")) == files
    assert (g1 != g2).nnz == 0


def test_cache_miss_when_features_or_parameters_change(tmp_path):
    x = _features(30, 6)
    cache = KnnGraphCache(tmp_path)
    base = cache.get(x, k=5, modality="image")
    base_key = cache.last_key
    y = x.copy()
    y[0, 0] += 1.0  # one changed value is a different graph input
    changed = cache.get(y, k=5, modality="image")
    keys = {base_key, cache.last_key}
    assert cache.misses == 2 and len(keys) == 2
    for kwargs in ({"k": 6}, {"weighted": False}, {"normalization": "none"}, {"modality": "text"}):
        args = {"k": 5, "modality": "image", **kwargs}
        cache.get(x, **args)
        assert cache.last_key not in keys, kwargs
        keys.add(cache.last_key)
    assert cache.hits == 0
    assert len(list((tmp_path / "knn").glob("*.npz"))) == len(keys)
    # the changed features gave a graph built from them, not the stale one
    np.testing.assert_allclose(changed.toarray(), knn_graph(y, k=5).toarray(), atol=1e-6)
    assert hash_array(x) != hash_array(y)


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    x = _features(20, 4)
    cache = KnnGraphCache(tmp_path)
    g = cache.get(x, k=3)
    cache.last_path.write_bytes(b"not a matrix")
    g2 = KnnGraphCache(tmp_path).get(x, k=3)
    assert (g != g2).nnz == 0


def test_no_cache_dir_writes_nothing(tmp_path):
    g = cached_knn_graph(_features(10, 3), None, k=2)
    assert g.shape == (10, 10) and not any(tmp_path.iterdir())
