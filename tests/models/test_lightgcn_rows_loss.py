"""LightGCN's fused batch loss (lightgcn._RowsLoss) against the plain expression it replaces: BPR on
the gathered propagated rows plus l2_penalty on the gathered layer-0 rows, through dense float64
propagation."""

from __future__ import annotations

import pytest
import torch

import cliper.testing.backbones as C
from cliper.graphs.adjacency import normalized_bipartite
from cliper.models.base import Batch
from cliper.models.layers import bpr_loss, l2_penalty


def _reference(model, batch: Batch, form: str, reg_weight: float, n_layers: int):
    a = torch.tensor(normalized_bipartite(C.data().train_matrix).toarray(), dtype=torch.float64)
    eu = model.user_embedding.weight.detach().double().requires_grad_(True)
    ei = model.item_embedding.weight.detach().double().requires_grad_(True)
    x = torch.cat([eu, ei])
    out, layer = x, x
    for _ in range(n_layers):
        layer = a @ layer
        out = out + layer
    out = out / (n_layers + 1)
    u, i = out[: model.n_users], out[model.n_users :]
    ub, pb, nb = u[batch.users], i[batch.pos_items], i[batch.neg_items]
    loss = bpr_loss((ub * pb).sum(1), (ub * nb).sum(1))
    loss = loss + reg_weight * l2_penalty(form, eu[batch.users], ei[batch.pos_items], ei[batch.neg_items])
    loss.backward()
    return loss, eu.grad, ei.grad


@pytest.mark.parametrize("form", ["norm", "squared", "mean"])
@pytest.mark.parametrize("n_layers", [0, 1, 2])
def test_loss_and_gradients_match_the_plain_expression(form, n_layers):
    """Repeated users and items, an item that is both a positive and a negative, a large reg_weight so
    the penalty's gradient is not negligible."""
    model = C.build("lightgcn", n_layers=n_layers, reg_weight=0.3, reg_form=form)
    b = C.make_batch(size=48)
    users = torch.cat([b.users, b.users[:5]])
    pos = torch.cat([b.pos_items, b.neg_items[:5]])
    neg = torch.cat([b.neg_items, b.pos_items[:5]])
    batch = Batch(users, pos, neg)
    loss = model.calculate_loss(batch)
    loss.backward()
    ref, gu, gi = _reference(model, batch, form, 0.3, n_layers)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.allclose(model.user_embedding.weight.grad.double(), gu, atol=1e-6)
    assert torch.allclose(model.item_embedding.weight.grad.double(), gi, atol=1e-6)


def test_a_zero_norm_penalty_has_a_zero_gradient():
    """The norm form at all-zero layer-0 rows: autograd's norm gives 0 there, not NaN."""
    model = C.build("lightgcn", n_layers=1, reg_weight=1.0, reg_form="norm")
    with torch.no_grad():
        model.user_embedding.weight.zero_()
        model.item_embedding.weight.zero_()
    model.calculate_loss(C.make_batch()).backward()
    assert torch.equal(model.user_embedding.weight.grad, torch.zeros_like(model.user_embedding.weight))
    assert torch.isfinite(model.item_embedding.weight.grad).all()
