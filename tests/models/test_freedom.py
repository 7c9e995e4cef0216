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


def test_evaluator_masks_train_items():
    C.check_evaluator_masks_train_items(NAME)


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
