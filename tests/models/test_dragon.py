"""DRAGON on a tiny graph: contract checks + its parts against small dense computations."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import cliper.testing.backbones as C
from cliper.testing import tiny_features

NAME = "dragon"


# -- small dense references (numpy, independent of cliper.graphs) ------------------------
def dense_knn_unweighted(x: np.ndarray, k: int) -> np.ndarray:
    """Cosine top-k (self included) with edges 1, then D^-1/2 A D^-1/2 with D the row sums."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ xn.T
    a = np.zeros_like(sim)
    for i in range(len(x)):
        a[i, np.argsort(-sim[i], kind="stable")[:k]] = 1.0
    d = a.sum(1) ** -0.5
    return d[:, None] * a * d[None, :]


def dense_bipartite(r: np.ndarray) -> np.ndarray:
    u, i = r.shape
    a = np.zeros((u + i, u + i))
    a[:u, u:], a[u:, :u] = r, r.T
    deg = a.sum(1)
    d = np.where(deg > 0, deg, 1.0) ** -0.5 * (deg > 0)
    return d[:, None] * a * d[None, :]


def train_dense() -> np.ndarray:
    return C.data().train_matrix.toarray().astype(np.float64)


# -- contract -------------------------------------------------------------------------------
def test_one_step_lowers_loss():
    C.check_step_lowers_loss(NAME)


def test_scores_shape():
    C.check_scores_shape(NAME)
    C.check_scores_shape(NAME, user_k=3, n_ui_layers=1, n_mm_layers=2, user_weighting="mean")


def test_seeded_runs_identical():
    C.check_seeded_runs_identical(NAME)


def test_evaluator_masks_train_items():
    C.check_evaluator_masks_train_items(NAME)


def test_eval_propagates_once_per_pass():
    C.check_eval_computes_once_per_pass(NAME, "propagate")


def test_features_change_scores():
    C.check_features_matter(NAME)


def test_single_modality():
    C.check_single_modality(NAME)


def test_trainable_fusion_gets_gradients():
    C.check_trainable_fusion_learns(NAME, "mlp")


def test_changing_features_changes_the_cached_graph(tmp_path):
    first, again, other = C.check_graph_cache_follows_features(NAME, tmp_path)
    a = first.item_graph.matrix.to_dense()
    assert torch.equal(a, again.item_graph.matrix.to_dense())
    assert not torch.equal(a, other.item_graph.matrix.to_dense())


def test_params_are_validated():
    import pydantic
    import pytest

    for bad in ({"embedding_dim": 0}, {"user_k": 0}, {"knn_k": 0}, {"mm_image_weight": 1.5}, {"reg_weight": -1.0},
                {"no_such_key": 1}):
        with pytest.raises(pydantic.ValidationError):
            C.build(NAME, **bad)


# -- formulas ---------------------------------------------------------------------------------
def test_item_graph_is_the_mixed_unweighted_knn_graph():
    """S = 0.3 S_v + 0.7 S_t, each a binary cosine top-k graph, D^-1/2 A D^-1/2 (Sec. 3.1, item-item graph)."""
    feats = tiny_features(C.N_ITEMS, 16, 12, seed=0)
    model = C.build(NAME, features=feats, knn_k=4, mm_image_weight=0.3)
    expected = 0.3 * dense_knn_unweighted(feats.get("image").numpy(), 4) + 0.7 * dense_knn_unweighted(
        feats.get("text").numpy(), 4)
    np.testing.assert_allclose(model.item_graph.matrix.to_dense().numpy(), expected, atol=1e-6)


def test_user_graph_is_softmax_over_top_k_co_interacting_users():
    """Row u: a top-k of the counts (R R^T)_uv, v != u, weighted by the softmax of those counts (Sec. 3.1)."""
    k = 5
    model = C.build(NAME, user_k=k)
    r = train_dense()
    co = r @ r.T
    np.fill_diagonal(co, 0)
    g = model.user_graph_matrix.toarray()
    for u in range(len(co)):
        chosen = np.flatnonzero(g[u])
        n_pos = int((co[u] > 0).sum())
        assert len(chosen) == min(k, n_pos)
        if not len(chosen):
            continue
        others = np.setdiff1d(np.flatnonzero(co[u] > 0), chosen)
        if len(others):
            assert co[u, chosen].min() >= co[u, others].max()  # a valid top-k (ties may go either way)
        e = np.exp(co[u, chosen] - co[u, chosen].max())
        np.testing.assert_allclose(g[u, chosen], e / e.sum(), rtol=1e-5)


def test_propagation_matches_a_dense_computation():
    """Sec. 3.1-3.2 end to end with dense matrices: x + Ax + A^2x per modality, attentive concatenation,
    item-item and user-user aggregation."""
    model = C.build(NAME, user_k=4, knn_k=3).eval()
    a = torch.tensor(dense_bipartite(train_dense()), dtype=torch.float32)
    s = model.item_graph.matrix.to_dense()
    gu = torch.tensor(model.user_graph_matrix.toarray(), dtype=torch.float32)
    n_u = C.N_USERS
    with torch.no_grad():
        reps = []
        for m in ("image", "text"):
            enc = model.encoders[m]
            f = model.features.get(m)
            hidden = F.leaky_relu(f @ enc.mlp_in.weight.T + enc.mlp_in.bias)
            feats = hidden @ enc.mlp_out.weight.T + enc.mlp_out.bias
            x = torch.cat([enc.preference, feats])
            x = x / x.norm(dim=1, keepdim=True)
            reps.append(x + a @ x + a @ (a @ x))
        w = model.user_modality_weight
        users = torch.cat([w[:, :1] * reps[0][:n_u], w[:, 1:] * reps[1][:n_u]], 1)
        items = torch.cat([reps[0][n_u:], reps[1][n_u:]], 1)
        users_ref, items_ref = users + gu @ users, items + s @ items
        got_u, got_i = model.propagate()
    assert got_u.shape == (n_u, 128) and got_i.shape == (C.N_ITEMS, 128)
    torch.testing.assert_close(got_u, users_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_i, items_ref, atol=1e-5, rtol=1e-5)


def test_fusion_weights_start_as_a_softmax_over_modalities():
    model = C.build(NAME)
    w = model.user_modality_weight.detach()
    assert w.shape == (C.N_USERS, 2)
    torch.testing.assert_close(w.sum(1), torch.ones(C.N_USERS))


def test_loss_is_log2_bpr_plus_preference_and_fusion_weight_l2():
    """Sec. 3.3 as the authors' code: -mean log2 sigmoid(s+ - s-) + lambda (mean P_v[u]^2 + mean P_t[u]^2 + mean W^2)."""
    model = C.build(NAME, reg_weight=0.5)
    b = C.make_batch()
    with torch.no_grad():
        users, items = model.propagate()
        u = users[b.users]
        diff = (u * items[b.pos_items]).sum(1) - (u * items[b.neg_items]).sum(1)
        bpr = -torch.log2(torch.sigmoid(diff)).mean()
        reg = sum((model.encoders[m].preference[b.users] ** 2).mean() for m in ("image", "text"))
        reg = reg + (model.user_modality_weight ** 2).mean()
        torch.testing.assert_close(model.calculate_loss(b), bpr + 0.5 * reg, atol=1e-5, rtol=1e-5)
        model_e = C.build(NAME, reg_weight=0.0, loss_log_base_2=False)
        users, items = model_e.propagate()
        u = users[b.users]
        diff = (u * items[b.pos_items]).sum(1) - (u * items[b.neg_items]).sum(1)
        torch.testing.assert_close(model_e.calculate_loss(b), -F.logsigmoid(diff).mean())


def test_export_embeddings_give_the_full_ranking_scores():
    model = C.build(NAME).eval()
    with torch.no_grad():
        users, items = model.export_embeddings()
        idx = torch.tensor([0, 4, 9, 39])
        torch.testing.assert_close(model.full_sort_predict(idx), users[idx] @ items.T)
    assert users.shape == (C.N_USERS, 128) and items.shape == (C.N_ITEMS, 128)


def test_single_modality_uses_that_modality_alone():
    from cliper.features.item_features import ItemFeatures

    x = np.random.default_rng(0).standard_normal((C.N_ITEMS, 9)).astype(np.float32)
    model = C.build(NAME, features=ItemFeatures(text=x)).eval()
    with torch.no_grad():
        users, items = model.propagate()
    assert users.shape == (C.N_USERS, 64) and items.shape == (C.N_ITEMS, 64)
    expected = dense_knn_unweighted(x, 10)  # one modality: its graph with weight 1
    np.testing.assert_allclose(model.item_graph.matrix.to_dense().numpy(), expected, atol=1e-6)
