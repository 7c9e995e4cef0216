"""faiss kNN backends: exact equals torch, auto picks by size, approximate reports recall, clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from cliper.errors import CliperError
from cliper.graphs.knn import KnnGraphCache, info_path, knn_cache_key, knn_graph
from cliper.graphs.knn_search import (KnnSearch, _inverse_norms, faiss_available, ivf_join, search_knn,
                                      train_ivf_centroids)

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss not installed (the faiss extra)")


def _features(n=80, d=12, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _clustered(n=3000, d=32, clusters=30, spread=0.15, seed=0):
    """A seeded Gaussian mixture on the sphere: what real embeddings look like, not uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, d)) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@needs_faiss
@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faiss_exact_equals_torch(include_self, seed):
    x = _features(90, 10, seed) * np.random.default_rng(seed).uniform(0.1, 5, (90, 1)).astype(np.float32)
    t = search_knn(x, 7, include_self, KnnSearch(backend="torch"), chunk_size=13)
    f = search_knn(x, 7, include_self, KnnSearch(backend="faiss-exact"))
    assert t.backend == "torch" and f.backend == "faiss-exact"
    assert torch.equal(t.indices, f.indices)
    assert torch.equal(t.values, f.values)  # re-scored by the same float64 code: identical weights
    if include_self:
        assert (f.indices[:, 0].numpy() == np.arange(90)).all()
    else:
        assert not (f.indices.numpy() == np.arange(90)[:, None]).any()


@needs_faiss
def test_faiss_exact_graph_equals_torch_graph_with_ties():
    x = _features(60, 6, seed=4)
    x[10] = x[3]  # exact duplicates: equal similarities everywhere
    x[25] = x[3] * 2.0
    for weighted in (True, False):
        gt = knn_graph(x, k=5, weighted=weighted, search=KnnSearch(backend="torch"))
        gf = knn_graph(x, k=5, weighted=weighted, search=KnnSearch(backend="faiss-exact"))
        assert (gt.indptr == gf.indptr).all() and (gt.indices == gf.indices).all()
        assert np.array_equal(gt.data, gf.data)
    vals, idx = search_knn(x, 4, True, KnnSearch(backend="faiss-exact")).values, \
        search_knn(x, 4, True, KnnSearch(backend="faiss-exact")).indices
    # item 3's duplicates (10, 25) follow itself, smaller index first
    assert idx[3].tolist()[:3] == [3, 10, 25] and idx[10].tolist()[:3] == [10, 3, 25]
    assert np.allclose(vals[3, :3].numpy(), 1.0)


@needs_faiss
def test_auto_picks_by_threshold():
    s = KnnSearch(backend="auto", approx_min_items=500)
    assert s.resolve(499) == "torch" and s.resolve(500) == "faiss-ivf"
    small = search_knn(_clustered(300), 5, search=s)
    assert small.backend == "torch" and small.recall is None
    big = search_knn(_clustered(600), 5, search=s)
    assert big.backend == "faiss-ivf" and big.recall is not None
    # approximate backends search exactly below the stated size
    assert KnnSearch(backend="faiss-ivf", approx_min_items=500).resolve(100) == "faiss-exact"
    assert KnnSearch(backend="faiss-hnsw", approx_min_items=500).resolve(10_000) == "faiss-hnsw"


@needs_faiss
@pytest.mark.parametrize("backend,knobs", [("faiss-ivf", {"ivf_nprobe": 4}),
                                           ("faiss-hnsw", {"hnsw_m": 8, "hnsw_ef_search": 16})])
def test_approximate_reports_a_high_recall_on_clustered_data(backend, knobs):
    x = _clustered(3000, 32, spread=1.0)  # overlapping clusters: small indexes miss a few neighbours
    res = search_knn(x, 10, True, KnnSearch(backend=backend, approx_min_items=1000, recall_sample=300, **knobs))
    assert res.backend == backend and res.recall_rows == 300
    assert 0.95 <= res.recall <= 1.0
    exact = search_knn(x, 10, True, KnnSearch(backend="torch"))
    hits = np.mean([len(set(a[1:]) & set(e[1:])) / 9 for a, e in zip(res.indices.tolist(), exact.indices.tolist())])
    assert hits < 1.0  # the index is approximate here, so the check below means something
    assert abs(hits - res.recall) < 0.02  # the sampled recall estimates the recall over all rows


@needs_faiss
def test_ivf_join_finds_what_faiss_ivf_search_finds():
    import faiss

    x = _clustered(2500, 24, spread=1.0, seed=3)
    xt = torch.from_numpy(x)
    inv = _inverse_norms(xt)
    centroids = train_ivf_centroids(xt, inv, 40, seed=0)
    ours = ivf_join(xt, inv, centroids, nprobe=3, m=8).numpy()
    quantizer = faiss.IndexFlatIP(24)
    quantizer.add(centroids)
    index = faiss.IndexIVFFlat(quantizer, 24, 40, faiss.METRIC_INNER_PRODUCT)
    index.add(x)  # the quantizer holds nlist centroids: no training
    index.nprobe = 3
    _, ref = index.search(x, 9)
    same = 0
    for i in range(2500):
        theirs = [j for j in ref[i] if j != i][:8]
        same += set(theirs) == set(ours[i])
    assert same >= 2490  # equal up to float near-ties at the 8th place
    assert (ours != np.arange(2500)[:, None]).all()


@needs_faiss
def test_a_poor_index_reports_a_poor_recall():
    x = _features(2000, 64, seed=5)  # unclustered noise: one IVF list of 64 seldom holds the true neighbours
    res = search_knn(x, 10, True, KnnSearch(backend="faiss-ivf", approx_min_items=100, ivf_nlist=31, ivf_nprobe=1,
                                            recall_sample=200))
    assert 0.0 <= res.recall < 0.6


@needs_faiss
def test_recall_is_stored_next_to_the_cache(tmp_path):
    x = _clustered(1500, 16)
    cache = KnnGraphCache(tmp_path, KnnSearch(backend="faiss-hnsw", approx_min_items=1000, recall_sample=100))
    cache.get(x, k=5, modality="text")
    info = cache.last_info
    assert info["backend"] == "faiss-hnsw" and 0.0 <= info["recall"] <= 1.0 and info["recall_rows"] == 100
    again = KnnGraphCache(tmp_path, KnnSearch(backend="faiss-hnsw", approx_min_items=1000, recall_sample=100))
    again.get(x, k=5, modality="text")
    assert again.hits == 1 and again.last_info == info
    assert info_path(again.last_path).is_file()


@needs_faiss
def test_cache_key_differs_by_backend(tmp_path):
    x = _features(50, 8)
    keys = {}
    for b in ("torch", "faiss-exact", "faiss-ivf", "faiss-hnsw"):
        cache = KnnGraphCache(tmp_path, KnnSearch(backend=b, approx_min_items=10))
        cache.get(x, k=4)
        keys[b] = cache.last_key
    assert len(set(keys.values())) == 4
    ivf = [knn_cache_key("h", 5000, 4, True, "sym", "m", True, KnnSearch(backend="faiss-ivf", approx_min_items=10,
                                                                         ivf_nprobe=p).spec(5000)) for p in (4, 8)]
    assert ivf[0] != ivf[1]  # index parameters shape an approximate graph too


def test_missing_faiss_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    with pytest.raises(CliperError) as err:
        search_knn(_features(), 5, search=KnnSearch(backend="faiss-exact"))
    msg = str(err.value)
    assert "\n" not in msg and "cliper[faiss]" in msg and "faiss-cpu" in msg
    # auto does not need faiss: it falls back to exact torch search
    res = search_knn(_features(), 5, search=KnnSearch(backend="auto", approx_min_items=10))
    assert res.backend == "torch"


def test_unknown_backend_is_rejected():
    with pytest.raises(CliperError, match="knn_backend"):
        KnnSearch(backend="annoy")


def test_config_reaches_the_model_context():
    from cliper.config.loader import load_config

    cfg = load_config(overrides=["graph.knn_backend=faiss-ivf", "graph.knn_ivf_nprobe=7",
                                 "graph.knn_approx_min_items=5000"])
    s = KnnSearch.from_config(cfg.graph)
    assert (s.backend, s.ivf_nprobe, s.approx_min_items) == ("faiss-ivf", 7, 5000)
    with pytest.raises(CliperError):
        load_config(overrides=["graph.knn_backend=annoy"])


@needs_faiss
@pytest.mark.parametrize("model", ["freedom", "lattice"])
def test_the_graph_config_reaches_the_models(model, tmp_path, monkeypatch):
    from cliper.config.loader import load_config
    from cliper.testing import backbones as C
    from cliper.testing import tiny_features
    from cliper.training.runner import build_model

    monkeypatch.setenv("CLIPER_CACHE_DIR", str(tmp_path))
    data = C.data()
    built = {}
    for backend in ("torch", "faiss-exact", "faiss-hnsw"):
        cfg = load_config(overrides=[f"model.name={model}", f"graph.knn_backend={backend}",
                                     "graph.knn_approx_min_items=10", "graph.knn_recall_sample=20"])
        m = build_model(cfg, data, tiny_features(data.n_items))
        assert m.knn_cache.last_info["backend"] == backend
        built[backend] = m
    assert built["faiss-hnsw"].knn_cache.last_info["recall"] is not None
    assert built["torch"].graph_keys != built["faiss-exact"].graph_keys
    if model == "freedom":  # the frozen item graph: the exact backends give the same one
        a, b = built["torch"].item_graph, built["faiss-exact"].item_graph
        assert torch.equal(a.matrix.to_dense(), b.matrix.to_dense())
    assert len(list((tmp_path / "knn").glob("*.json"))) == len(list((tmp_path / "knn").glob("*.npz"))) > 0
