"""BM3 on a tiny graph: contract checks; no negatives are used."""

from __future__ import annotations

import torch

import cliper.testing.backbones as C
from cliper.models import Batch

NAME = "bm3"


def test_one_step_lowers_loss():
    C.check_step_lowers_loss(NAME)


def test_scores_shape():
    C.check_scores_shape(NAME)


def test_seeded_runs_identical():
    C.check_seeded_runs_identical(NAME)


def test_ranking_follows_the_trained_model():
    C.check_ranking_follows_the_trained_model(NAME)


def test_eval_propagates_once_per_pass():
    C.check_eval_computes_once_per_pass(NAME, "propagate")


def test_trainable_fusion_gets_gradients():
    C.check_trainable_fusion_learns(NAME, "mlp")


def test_single_modality():
    C.check_single_modality(NAME, "text")


def test_negatives_are_ignored():
    model = C.build(NAME)
    model.train()
    b = C.make_batch()
    other = Batch(b.users, b.pos_items, torch.roll(b.neg_items, 5))
    assert C.loss_at(model, b) == C.loss_at(model, other)


def test_target_dropout_changes_the_loss_between_draws():
    model = C.build(NAME, dropout=0.5)
    model.train()
    b = C.make_batch()
    assert C.loss_at(model, b, seed=1) != C.loss_at(model, b, seed=2)


def test_trainable_feature_residual_learns():
    model = C.build(NAME, train_features=True)
    C.check_step_lowers_loss(NAME, train_features=True)
    model.train()
    model.calculate_loss(C.make_batch()).backward()
    assert model.residuals["image"].grad.abs().sum() > 0


def _dense_reference(model, b, reg_weight, cl_weight):
    """BM3's loss (paper Eq. 5-8, MMRec's calculate_loss) from dense matrices, dropout 0."""
    import torch.nn.functional as F

    from cliper.graphs.adjacency import normalized_bipartite

    a = torch.tensor(normalized_bipartite(C.data().train_matrix).toarray())
    e0 = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    out = (e0 + a @ e0) / 2  # n_layers = 1: mean of layers 0 and 1
    n_u = C.N_USERS
    users, items = out[:n_u], out[n_u:] + model.item_embedding.weight
    pred = model.predictor

    def cos_loss(x, y):  # 1 - mean cosine, the target without gradient
        return 1 - F.cosine_similarity(x, y.detach(), dim=-1).mean()

    u, i = users[b.users], items[b.pos_items]
    loss = cos_loss(pred(u), i) + cos_loss(pred(i), u)
    mm = 0.0
    for m in ("image", "text"):
        f = model.projections[m](model.features.get(m)[b.pos_items])
        mm = mm + cos_loss(pred(f), i) + cos_loss(pred(f), f)
    reg = (torch.sqrt((users**2).sum()) + torch.sqrt((items**2).sum())) / model.n_items  # EmbLoss
    return loss + reg_weight * reg + cl_weight * mm


def test_loss_matches_dense_formulas():
    model = C.build(NAME, dropout=0.0, n_layers=1, reg_weight=0.3, cl_weight=2.0, train_features=False)
    model.train()
    b = C.make_batch()
    expected = _dense_reference(model, b, 0.3, 2.0)
    torch.testing.assert_close(model.calculate_loss(b), expected, atol=1e-5, rtol=1e-5)


def test_targets_carry_no_gradient():
    """Gradients equal the dense formula's with detached targets (the stop-gradient of Eq. 4)."""
    model = C.build(NAME, dropout=0.0, n_layers=1, reg_weight=0.3, cl_weight=2.0, train_features=False)
    model.train()
    b = C.make_batch()
    model.calculate_loss(b).backward()
    got = model.user_embedding.weight.grad.clone()
    model.zero_grad()
    _dense_reference(model, b, 0.3, 2.0).backward()
    torch.testing.assert_close(got, model.user_embedding.weight.grad, atol=1e-6, rtol=1e-4)
    # and differs from letting gradients flow into the targets
    model.zero_grad()
    import torch.nn.functional as F

    users, items = model.propagate()
    u, i = users[b.users], items[b.pos_items]
    both = 2 - F.cosine_similarity(model.predictor(u), i).mean() - F.cosine_similarity(model.predictor(i), u).mean()
    both.backward()
    assert not torch.allclose(got, model.user_embedding.weight.grad, atol=1e-6)


def test_target_dropout_zeroes_and_rescales_target_rows(monkeypatch):
    """dropout p: each target entry is 0 or x / (1 - p) (torch's inverted dropout, as MMRec's F.dropout)."""
    model = C.build(NAME, dropout=0.5, train_features=False)
    model.train()
    b = C.make_batch()
    seen = []
    real = torch.nn.functional.dropout

    def spy(x, p=0.5, training=True, inplace=False):
        y = real(x, p, training, inplace)
        seen.append((x.detach(), y.detach(), p))
        return y

    monkeypatch.setattr(torch.nn.functional, "dropout", spy)
    model.calculate_loss(b)
    assert len(seen) == 2 + 2  # user and item targets, one feature target per modality
    for x, y, p in seen:
        assert p == 0.5
        kept = y != 0
        torch.testing.assert_close(y[kept], x[kept] / 0.5)
        assert 0.3 < kept.float().mean() < 0.7
