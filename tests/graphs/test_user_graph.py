import numpy as np
import pytest
import scipy.sparse as sp

from cliper.errors import ConfigError
from cliper.graphs import user_graph as ug


def random_train(n_users=60, n_items=25, density=0.15, seed=0):
    rng = np.random.default_rng(seed)
    m = (rng.random((n_users, n_items)) < density).astype(np.float32)
    m[3] = 0  # a user without items
    return sp.csr_matrix(m)


def dense_topk(train: sp.csr_matrix, k: int) -> np.ndarray:
    """Reference: dense R R^T, zero diagonal, per row the k largest (ties: smaller column)."""
    r = train.toarray()
    c = r @ r.T
    np.fill_diagonal(c, 0)
    out = np.zeros_like(c)
    for u in range(c.shape[0]):
        cols = [v for v in np.lexsort((np.arange(c.shape[1]), -c[u])) if c[u, v] > 0][:k]
        out[u, cols] = c[u, cols]
    return out


@pytest.mark.parametrize("k", [1, 3, 10, 100])
def test_topk_matches_dense(k):
    train = random_train()
    got = ug.co_occurrence_topk(train, k).toarray()
    assert np.array_equal(got, dense_topk(train, k))


def test_chunking_does_not_change_the_graph():
    train = random_train(seed=1)
    ref = ug.co_occurrence_topk(train, 4, chunk_users=10_000)
    for chunk in (1, 7, 32):
        other = ug.co_occurrence_topk(train, 4, chunk_users=chunk)
        assert (ref != other).nnz == 0


def test_user_without_items_has_no_neighbours_and_counts_ignore_values():
    train = random_train()
    weighted = train.copy()
    weighted.data *= 5.0  # ratings or duplicates do not change co-occurrence counts
    g = ug.co_occurrence_topk(weighted, 5)
    assert g[3].nnz == 0
    assert (g != ug.co_occurrence_topk(train, 5)).nnz == 0


def test_softmax_and_mean_weights_by_hand():
    counts = sp.csr_matrix(np.array([[0, 1, 3], [2, 0, 0], [0, 0, 0]], dtype=np.float32))
    w = ug.neighbour_weights(counts, "softmax").toarray()
    e1, e3 = np.exp(1.0), np.exp(3.0)
    assert np.allclose(w[0], [0, e1 / (e1 + e3), e3 / (e1 + e3)])
    assert np.allclose(w[1], [1, 0, 0]) and np.allclose(w[2], 0)
    m = ug.neighbour_weights(counts, "mean").toarray()
    assert np.allclose(m[0], [0, 0.5, 0.5])


def test_cache_miss_then_hit_and_key(tmp_path, monkeypatch):
    train = random_train()
    g1 = ug.build_user_graph(train, k=4, cache_dir=tmp_path)
    path = ug.user_graph_cache_path(tmp_path, train, 4)
    assert path.is_file()
    monkeypatch.setattr(ug, "co_occurrence_topk", lambda *a, **kw: pytest.fail("cache not used"))
    g2 = ug.build_user_graph(train, k=4, cache_dir=tmp_path)
    assert (g1 != g2).nnz == 0
    # the key changes with the train graph and with k
    other = random_train(seed=2)
    assert ug.user_graph_cache_path(tmp_path, other, 4) != path
    assert ug.user_graph_cache_path(tmp_path, train, 5) != path
    assert ug.train_graph_hash(train) == ug.train_graph_hash(train.copy())


def test_damaged_cache_is_rebuilt(tmp_path):
    train = random_train()
    path = ug.user_graph_cache_path(tmp_path, train, 4)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    g = ug.build_user_graph(train, k=4, cache_dir=tmp_path)
    assert (g != ug.build_user_graph(train, k=4)).nnz == 0


def test_bad_parameters():
    with pytest.raises(ConfigError, match="k must be positive"):
        ug.co_occurrence_topk(random_train(), 0)
    with pytest.raises(ConfigError, match="weighting"):
        ug.neighbour_weights(sp.csr_matrix((2, 2)), "max")
