import numpy as np
import pytest
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


def _dense_user_graph(r: np.ndarray, k: int) -> np.ndarray:
    """Top-k co-occurring users (ties to the smaller index), softmax of the shared-item counts."""
    c = r @ r.T
    np.fill_diagonal(c, 0)
    w = np.zeros_like(c)
    for u in range(c.shape[0]):
        cand = [v for v in np.lexsort((np.arange(c.shape[1]), -c[u])) if c[u, v] > 0][:k]
        if cand:
            e = np.exp(c[u, cand] - c[u, cand].max())
            w[u, cand] = e / e.sum()
    return w


@pytest.mark.parametrize("reference_fusion", [False, True])
def test_propagation_matches_dense_formulas(reference_fusion):
    """Section III-B/C with dense matrices: x + Ax + A^2 x per modality (A = D^-1/2 [0 R; R^T 0] D^-1/2),
    users fused by their modality weights, then u + sum_v w_uv u_v; items summed over modalities."""
    model = build(NAME, k=3, reference_fusion=reference_fusion)
    r = data().train_matrix.toarray().astype(np.float64)
    n_users, n_items = r.shape
    a = np.block([[np.zeros((n_users, n_users)), r], [r.T, np.zeros((n_items, n_items))]])
    deg = a.sum(1)
    inv = np.where(deg > 0, deg**-0.5, 0.0)
    a_hat = torch.from_numpy(inv[:, None] * a * inv[None, :]).float()
    lrelu, norm = torch.nn.functional.leaky_relu, torch.nn.functional.normalize
    with torch.no_grad():
        reps = {}
        for m in ("image", "text"):
            enc = model.encoders[m]
            h = enc.mlp_out(lrelu(enc.mlp_in(model.features.get(m))))
            x = norm(torch.cat([enc.preference, h], 0))
            reps[m] = x + a_hat @ x + a_hat @ (a_hat @ x)
        img_u, txt_u = reps["image"][:n_users], reps["text"][:n_users]
        if reference_fusion:  # MMRec: the image representation already holds the text one
            img_u = img_u + txt_u
        w = model.user_modality_weight
        users = w[:, :1] * img_u + w[:, 1:] * txt_u
        users = users + torch.from_numpy(_dense_user_graph(r, 3)).float() @ users
        items = reps["image"][n_users:] + reps["text"][n_users:]
        got_u, got_i = model.propagate()
    assert torch.allclose(got_u, users, atol=1e-5) and torch.allclose(got_i, items, atol=1e-5)


def test_default_k_is_mmrecs():
    assert build(NAME).params.k == 40
