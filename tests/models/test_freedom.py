"""FREEDOM on a tiny graph: contract checks, frozen cached kNN graph, degree-sensitive pruning."""

from __future__ import annotations

import numpy as np
import torch

import cliper.testing.backbones as C
from cliper.graphs.knn import knn_graph
from cliper.testing import tiny_features

NAME = "freedom"


def test_one_step_lowers_loss():
    C.check_step_lowers_loss(NAME, dropout=0.5)


def test_scores_shape():
    C.check_scores_shape(NAME)


def test_seeded_runs_identical():
    C.check_seeded_runs_identical(NAME)


def test_ranking_follows_the_trained_model():
    C.check_ranking_follows_the_trained_model(NAME)


def test_eval_propagates_once_per_pass():
    C.check_eval_computes_once_per_pass(NAME, "propagate")


def test_trainable_fusion_gets_gradients():
    C.check_trainable_fusion_learns(NAME, "mlp", reg_weight=1.0)


def test_single_modality():
    C.check_single_modality(NAME, "text")
    C.check_single_modality(NAME, "image")


def test_item_graph_is_the_weighted_mix_of_modality_knn_graphs():
    feats = tiny_features(C.N_ITEMS, 16, 12, seed=0)
    model = C.build(NAME, features=feats, knn_k=4, mm_image_weight=0.3)
    expected = 0.3 * knn_graph(feats.get("image"), 4, weighted=False) + 0.7 * knn_graph(feats.get("text"), 4, weighted=False)
    got = model.item_graph.matrix.to_dense().numpy()
    np.testing.assert_allclose(got, expected.toarray(), atol=1e-6)


def test_changing_features_changes_the_cached_graph(tmp_path):
    first, again, other = C.check_graph_cache_follows_features(NAME, tmp_path)
    a = first.item_graph.matrix.to_dense()
    assert torch.equal(a, again.item_graph.matrix.to_dense())
    assert not torch.equal(a, other.item_graph.matrix.to_dense())


def test_pruning_keeps_the_configured_share_and_repeats_with_the_seed():
    model = C.build(NAME, dropout=0.8)
    n_edges = C.data().train_matrix.nnz
    torch.manual_seed(5)
    model.pre_epoch_hook(1)
    g1 = model.masked_graph.matrix.to_dense()
    # symmetric graph over users + items holding int(E * 0.2) user-item edges (each stored twice)
    assert int((g1 != 0).sum()) == 2 * int(n_edges * (1 - 0.8))
    assert torch.allclose(g1, g1.T)
    torch.manual_seed(5)
    model.pre_epoch_hook(2)
    assert torch.equal(g1, model.masked_graph.matrix.to_dense())
    model.pre_epoch_hook(3)
    assert not torch.equal(g1, model.masked_graph.matrix.to_dense())
    # evaluation uses the full graph
    assert model.full_graph.nnz == 2 * n_edges


def test_pruning_is_degree_sensitive():
    """Edges between low-degree nodes survive more often than edges between hubs (p ~ 1/sqrt(d_u d_i))."""
    model = C.build(NAME, dropout=0.5)
    w = model._edge_weight.numpy()
    counts = np.zeros_like(w)
    torch.manual_seed(0)
    for _ in range(200):
        keep = torch.multinomial(model._edge_weight, w.size // 2, replacement=False).numpy()
        counts[keep] += 1
    lo, hi = w <= np.quantile(w, 0.25), w >= np.quantile(w, 0.75)
    assert counts[hi].mean() > counts[lo].mean()


def test_no_dropout_trains_on_the_full_graph():
    model = C.build(NAME, dropout=0.0)
    model.pre_epoch_hook(1)
    assert model.masked_graph is model.full_graph


def test_alignment_loss_equals_the_papers_two_projection_form():
    """u.W(x_pos - x_neg) is the paper's BPR(u.(W x_pos + b), u.(W x_neg + b)), bias included."""
    from cliper.models.layers import bpr_loss

    model = C.build(NAME, dropout=0.0, reg_weight=1.0)
    model.train()
    model.pre_epoch_hook(1)
    b = C.make_batch()
    with torch.no_grad():
        torch.nn.init.normal_(model.projections["image"].bias)
        users, items = model.propagate(model.masked_graph)
        u = users[b.users]
        main = bpr_loss((u * items[b.pos_items]).sum(1), (u * items[b.neg_items]).sum(1))
        align = 0.0
        for m in ("image", "text"):
            proj = model.projections[m]
            f = model.features.get(m)
            align = align + bpr_loss((u * proj(f[b.pos_items])).sum(1), (u * proj(f[b.neg_items])).sum(1))
        assert torch.allclose(model.calculate_loss(b), main + align, atol=1e-5)


def _dense_sym(a: np.ndarray) -> np.ndarray:
    """D^-1/2 A D^-1/2 by hand (degree 0 rows stay 0)."""
    d = a.sum(1)
    inv = np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1e-12)), 0.0)
    return inv[:, None] * a * inv[None, :]


def test_prune_graph_samples_by_inverse_sqrt_degrees_and_renormalises(monkeypatch):
    """prune_graph draws with weights 1/sqrt(d_u d_i) of the FULL train graph, then normalises the
    kept edges with the KEPT graph's degrees (MMRec's _normalize_adj_m on keep_indices)."""
    model = C.build(NAME, dropout=0.75)
    r = C.data().train_matrix.toarray().astype(np.float64)
    coo = C.data().train_matrix.tocoo()
    du, di = r.sum(1), r.sum(0)
    seen = {}
    real = torch.multinomial

    def spy(weights, n, replacement=False):
        seen["weights"], seen["n"], seen["replacement"] = weights.clone(), n, replacement
        return real(weights, n, replacement=replacement)

    monkeypatch.setattr(torch, "multinomial", spy)
    torch.manual_seed(3)
    graph = model.prune_graph().matrix.to_dense().numpy()
    # the sampling weights, edge by edge, over exactly the train edges
    users, items = model._edge_users.numpy(), model._edge_items.numpy()
    assert sorted(zip(users.tolist(), items.tolist())) == sorted(zip(coo.row.tolist(), coo.col.tolist()))
    np.testing.assert_allclose(seen["weights"].numpy(), 1.0 / np.sqrt(du[users] * di[items]), rtol=1e-5)
    assert seen["n"] == int(coo.nnz * 0.25) and seen["replacement"] is False
    # renormalised on the kept graph: rebuild it from the kept edges by hand
    n_u = r.shape[0]
    kept = np.zeros_like(r)
    kept[graph[:n_u, n_u:] > 0] = 1.0
    assert kept.sum() == seen["n"] and (kept <= r).all()  # a subset of the train edges, no duplicates
    a = np.block([[np.zeros((n_u, n_u)), kept], [kept.T, np.zeros((r.shape[1], r.shape[1]))]])
    np.testing.assert_allclose(graph, _dense_sym(a), atol=1e-6)
    # ...which differs from reusing the full graph's values on the kept edges
    full = model.full_graph.matrix.to_dense().numpy()
    assert not np.allclose(graph[graph > 0], full[graph > 0])


def test_unequal_embedding_and_feature_sizes_are_one_config_error():
    import pytest

    with pytest.raises(ValueError, match="feat_embed_dim .32. must equal model.embedding_dim .64."):
        C.build(NAME, feat_embed_dim=32)


def test_default_freezes_the_feature_tables():
    """Frozen by default (a measured decision, docs/backbones/freedom.md): no residual is made."""
    assert C.build(NAME).residuals is None


def test_train_features_trains_the_tables_as_mmrec():
    """MMRec loads FREEDOM's features with freeze=False; ``train_features: true`` does that: a step moves them."""
    model = C.build(NAME, reg_weight=1.0, train_features=True)
    before = C.loss_at(model, C.make_batch())
    model.train()
    model.pre_epoch_hook(1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.calculate_loss(C.make_batch()).backward()
    opt.step()
    assert model.residuals is not None and model.residuals["image"].abs().sum() > 0
    assert C.loss_at(model, C.make_batch()) != before
