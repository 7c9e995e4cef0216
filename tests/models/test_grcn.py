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


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row softmax over the mask's entries; rows without entries are 0."""
    s = scores.masked_fill(~mask, float("-inf"))
    return torch.nan_to_num(torch.softmax(s, 1), nan=0.0) * mask


@pytest.mark.parametrize("n_routing", [0, 2])
def test_routing_and_propagation_match_dense_formulas(n_routing):
    """Section 3.2-3.4 written out with dense U x I matrices on the tiny graph."""
    model = build(NAME, n_routing=n_routing, weight_mode="confid").double()
    mask = torch.from_numpy(data().train_matrix.toarray() > 0)  # [U, I]
    n_users = model.n_users
    lrelu = torch.nn.functional.leaky_relu
    norm = torch.nn.functional.normalize
    with torch.no_grad():
        a_ui, a_iu, users_c, items_c = [], [], [], []
        for m in model.used:
            r = model.refiners[m]
            f = norm(lrelu(model.features.get(m).double() @ r.projection.weight.T + r.projection.bias))
            p = norm(r.preference)
            for _ in range(n_routing):  # routing: p_u <- norm(p_u + sum_i softmax_i(p_u . f_i) f_i)
                p = norm(p + _masked_softmax(p @ f.T, mask) @ f)
            s = p @ f.T
            a_ui.append(_masked_softmax(s, mask))  # target user, over its items
            a_iu.append(_masked_softmax(s.T, mask.T))  # target item, over its users
            users_c.append(p + a_ui[-1] @ f)
            items_c.append(f + a_iu[-1] @ p)
        conf = model.confidence
        # confid: max over modalities of affinity x the source node's confidence, then ReLU
        w_ui = torch.stack([a * conf[n_users:, k][None, :] for k, a in enumerate(a_ui)]).max(0).values
        w_iu = torch.stack([a * conf[:n_users, k][None, :] for k, a in enumerate(a_iu)]).max(0).values
        w_ui, w_iu = torch.relu(w_ui) * mask, torch.relu(w_iu) * mask.T
        x = norm(model.id_embedding)
        xu, xi = x[:n_users], x[n_users:]
        xu1, xi1 = w_ui @ xi, w_iu @ xu
        xu2, xi2 = w_ui @ xi1, w_iu @ xu1
        exp_u = torch.cat([xu + xu1 + xu2, *users_c], 1)
        exp_i = torch.cat([xi + xi1 + xi2, *items_c], 1)
        got_u, got_i = model.propagate()
    assert torch.allclose(got_u, exp_u, atol=1e-8) and torch.allclose(got_i, exp_i, atol=1e-8)


def test_penalty_includes_the_image_preference_table():
    """MMRec's L2: batch ID rows, batch users' preferences, plus the whole image preference table."""
    from cliper.testing.backbones import make_batch

    batch = make_batch()
    model = build(NAME, reg_weight=1.0).double()
    zero = build(NAME, reg_weight=0.0).double()
    with torch.no_grad():
        got = model.calculate_loss(batch) - zero.calculate_loss(batch)
        ids, n = model.id_embedding, model.n_users
        expected = ids[batch.users].pow(2).mean() + 0.5 * (
            ids[n + batch.pos_items].pow(2).mean() + ids[n + batch.neg_items].pow(2).mean()
        )
        for m in ("image", "text"):
            expected = expected + model.refiners[m].preference[batch.users].pow(2).mean()
        expected = expected + model.refiners["image"].preference.pow(2).mean()
    assert torch.allclose(got, expected, atol=1e-10)
