"""LATTICE on a tiny graph: contract checks, learned graph vs a dense computation, cached initial graphs."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import cliper.testing.backbones as C
from cliper.graphs.knn import knn_graph

NAME = "lattice"


def test_one_step_lowers_loss():
    C.check_step_lowers_loss(NAME)


def test_scores_shape():
    C.check_scores_shape(NAME)


def test_seeded_runs_identical():
    C.check_seeded_runs_identical(NAME)


def test_ranking_follows_the_trained_model():
    C.check_ranking_follows_the_trained_model(NAME)


def test_eval_builds_the_item_graph_once_per_pass():
    C.check_eval_computes_once_per_pass(NAME, "item_graph_edges")


def test_trainable_fusion_gets_gradients():
    C.check_trainable_fusion_learns(NAME, "mlp")


def test_single_modality():
    C.check_single_modality(NAME, "image")


def test_changing_features_changes_the_cached_graph(tmp_path):
    first, again, other = C.check_graph_cache_follows_features(NAME, tmp_path)
    for m in ("image", "text"):
        assert torch.equal(first._original[m][2], again._original[m][2])
        a = torch.sparse_coo_tensor(torch.stack(first._original[m][:2]), first._original[m][2], (30, 30)).to_dense()
        b = torch.sparse_coo_tensor(torch.stack(other._original[m][:2]), other._original[m][2], (30, 30)).to_dense()
        assert not torch.equal(a, b)


def _dense_item_graph(model) -> torch.Tensor:
    """A = (1-l) D^-1/2 (sum_m a_m kNN(W_m x_m)) D^-1/2 + l sum_m a_m S_m, computed densely."""
    p = model.params
    alpha = torch.softmax(model.modal_weight, 0)
    learned = torch.zeros(30, 30)
    original = torch.zeros(30, 30)
    for j, m in enumerate(model.modal):
        z = F.normalize(model.projections[m](model.features.get(m)), dim=1)
        sim = z @ z.T
        v, i = torch.topk(sim, p.knn_k, dim=1)
        learned += alpha[j] * torch.zeros(30, 30).scatter(1, i, v)
        original += alpha[j] * torch.from_numpy(knn_graph(model.features.get(m), p.knn_k).toarray())
    d = learned.sum(1).pow(-0.5)
    return (1 - p.lambda_coeff) * d[:, None] * learned * d[None, :] + p.lambda_coeff * original


def test_learned_graph_matches_dense_computation():
    model = C.build(NAME, knn_k=4, lambda_coeff=0.7)
    with torch.no_grad():
        r, c, v = model.item_graph_edges()
        sparse = torch.zeros(30, 30).index_put((r, c), v, accumulate=True)
        np.testing.assert_allclose(sparse.numpy(), _dense_item_graph(model).numpy(), atol=1e-5)


def test_graph_learning_gets_gradients_on_the_first_batch_of_an_epoch_only():
    model = C.build(NAME)
    model.train()
    model.pre_epoch_hook(1)
    model.calculate_loss(C.make_batch(0)).backward()
    assert model.modal_weight.grad is not None and model.modal_weight.grad.abs().sum() > 0
    assert all(p.weight.grad.abs().sum() > 0 for p in model.projections.values())
    model.zero_grad(set_to_none=True)
    model.calculate_loss(C.make_batch(1)).backward()  # same epoch: the graph is reused, detached
    assert model.modal_weight.grad is None
    model.pre_epoch_hook(2)
    model.calculate_loss(C.make_batch(2)).backward()
    assert model.modal_weight.grad is not None


def test_symmetric_user_item_normalisation_option():
    C.check_step_lowers_loss(NAME, ui_normalization="sym")


def test_learned_graph_in_small_similarity_tiles_matches_dense_computation():
    model = C.build(NAME, knn_k=4, lambda_coeff=0.7, knn_chunk_size=7)  # 5 tiles over 30 items
    with torch.no_grad():
        r, c, v = model.item_graph_edges()
        sparse = torch.zeros(30, 30).index_put((r, c), v, accumulate=True)
        np.testing.assert_allclose(sparse.numpy(), _dense_item_graph(model).numpy(), atol=1e-5)
