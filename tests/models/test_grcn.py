import pytest
import torch

from cliper.testing import tiny_features
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

NAME = "grcn"


def test_step_lowers_loss():
    check_step_lowers_loss(NAME)


@pytest.mark.parametrize(
    "params", [{}, {"weight_mode": "mean", "fusion": "id"}, {"weight_mode": "max", "pruning": False, "n_routing": 0}]
)
def test_scores_shape(params):
    check_scores_shape(NAME, **params)


def test_seeded_runs_identical():
    check_seeded_runs_identical(NAME)


def test_evaluator_masks_train_items():
    check_evaluator_masks_train_items(NAME)


def test_features_change_scores():
    check_features_matter(NAME)


def test_single_modality():
    check_single_modality(NAME)


def _refined_weights(model):
    captured = {}
    orig = model._edge_weights

    def spy(aff, pattern, offset):
        w = orig(aff, pattern, offset)
        captured[pattern is model.ui] = w
        return w

    model._edge_weights = spy
    with torch.no_grad():
        model.propagate()
    return captured[True], captured[False]


def test_pruning_zeroes_negative_edges_and_features_change_the_refined_graph():
    model = build(NAME, weight_mode="confid")
    w_ui, w_iu = _refined_weights(model)
    assert w_ui.shape == (model.ui.nnz,) and w_iu.shape == (model.iu.nnz,)
    assert (w_ui >= 0).all() and (w_iu >= 0).all()
    assert (w_ui == 0).any() or (w_iu == 0).any()  # random confidences: some edges pruned
    other = build(NAME, features=tiny_features(30, 16, 12, seed=9), weight_mode="confid")
    w2_ui, _ = _refined_weights(other)
    assert not torch.allclose(w_ui, w2_ui)


def test_affinities_are_softmax_over_neighbours():
    """Section 3.2: per-edge affinities sum to 1 over each user's items."""
    model = build(NAME)
    refiner = model.refiners["image"]
    with torch.no_grad():
        users, items, a_ui, a_iu = refiner(model.features.get("image"), model.ui, model.iu)
    train = data().train_matrix
    sums = torch.zeros(train.shape[0]).index_add_(0, model.ui.rows, a_ui)
    has_items = torch.from_numpy((train.getnnz(1) > 0))
    assert torch.allclose(sums[has_items], torch.ones(int(has_items.sum())), atol=1e-5)
    item_sums = torch.zeros(train.shape[1]).index_add_(0, model.iu.rows, a_iu)
    has_users = torch.from_numpy(train.getnnz(0) > 0)
    assert torch.allclose(item_sums[has_users], torch.ones(int(has_users.sum())), atol=1e-5)
    assert users.shape == (train.shape[0], model.params.latent_dim)
    assert items.shape == (train.shape[1], model.params.latent_dim)


def test_concat_representation_width():
    model = build(NAME, embedding_dim=8, latent_dim=4)
    with torch.no_grad():
        users, items = model.propagate()
    assert users.shape[1] == items.shape[1] == 8 + 2 * 4
