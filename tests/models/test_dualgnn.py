import numpy as np
import scipy.sparse as sp
import torch

from cliper.graphs import user_graph as ug
from cliper.graphs.adjacency import SparseGraph
from cliper.testing.backbones import (
    build,
    check_evaluator_masks_train_items,
    check_features_matter,
    check_scores_shape,
    check_seeded_runs_identical,
    check_single_modality,
    check_step_lowers_loss,
    data,
)

NAME = "dualgnn"


def test_step_lowers_loss():
    check_step_lowers_loss(NAME)


def test_scores_shape():
    check_scores_shape(NAME)
    check_scores_shape(NAME, user_weighting="mean", k=3, n_layers=1)


def test_seeded_runs_identical():
    check_seeded_runs_identical(NAME)


def test_evaluator_masks_train_items():
    check_evaluator_masks_train_items(NAME)


def test_features_change_scores():
    check_features_matter(NAME)


def test_single_modality():
    check_single_modality(NAME)


def test_user_graph_is_top_k_row_stochastic():
    model = build(NAME, k=4)
    g = model.user_graph_matrix
    n = data().n_users
    assert g.shape == (n, n)
    assert np.diff(g.indptr).max() <= 4
    sums = np.asarray(g.sum(1)).ravel()
    assert np.allclose(sums[sums > 0], 1.0, atol=1e-5)
    assert g.diagonal().sum() == 0


def test_user_graph_cached_by_train_graph_and_k(tmp_path, monkeypatch):
    build(NAME, cache_dir=tmp_path, k=5)
    files = sorted((tmp_path / "user_graph").glob("*.npz"))
    assert len(files) == 1
    calls = []
    real = ug.co_occurrence_topk
    monkeypatch.setattr(ug, "co_occurrence_topk", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    build(NAME, cache_dir=tmp_path, k=5)  # hit
    assert calls == []
    build(NAME, cache_dir=tmp_path, k=6)  # other k: miss, a second file
    assert calls == [1] and len(list((tmp_path / "user_graph").glob("*.npz"))) == 2


def test_user_graph_feeds_user_representation():
    """u <- u + sum_v w_uv u_v (Section III-C): an empty user graph changes the scores."""
    model = build(NAME).eval()
    with torch.no_grad():
        with_graph = model.full_sort_predict(torch.arange(40))
        model.user_graph = SparseGraph(sp.csr_matrix((40, 40), dtype=np.float32))
        model.eval()  # clears the cached propagation
        without = model.full_sort_predict(torch.arange(40))
    assert not torch.allclose(with_graph, without)
