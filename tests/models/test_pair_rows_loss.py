"""layers.pair_rows_loss (BPR + the L2 penalty in one autograd node) against a float64 NumPy-free
reference written out by hand, for every reg_form, with repeated users and items."""

import numpy as np
import pytest
import torch

from cliper.models.layers import pair_rows_loss


def _reference(U, V, users, where, form, rw):
    """The plain expression in float64: -mean log sigmoid(<u,p> - <u,q>) + rw * penalty."""
    b = users.numel()
    u, pn = U[users], V[where]
    p, q = pn[:b], pn[b:]
    diff = (u * p).sum(1) - (u * q).sum(1)
    loss = -torch.log(1 / (1 + torch.exp(-diff))).mean()
    sq = [(t * t).sum() for t in (u, p, q)]
    if form == "norm":
        reg = sum(torch.sqrt(s) for s in sq) / b
    elif form == "squared":
        reg = sum(sq) / (2 * b)
    else:
        reg = sum(s / (b * u.shape[1]) for s in sq)
    return loss + rw * reg


def _case(seed, n_users=9, n_rows=7, d=5, b=12):
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(n_users, d, generator=g)
    V = torch.randn(n_rows, d, generator=g)
    users = torch.randint(0, n_users, (b,), generator=g)  # repeats on purpose
    where = torch.randint(0, n_rows, (2 * b,), generator=g)
    return U, V, users, where


@pytest.mark.parametrize("form", ["norm", "squared", "mean"])
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_and_both_gradients_match_the_float64_expression(form, seed):
    U, V, users, where = _case(seed)
    rw = 0.37
    U32, V32 = U.clone().requires_grad_(), V.clone().requires_grad_()
    loss = pair_rows_loss(U32, V32, users, where, form, rw)
    loss.backward()
    U64, V64 = U.double().requires_grad_(), V.double().requires_grad_()
    ref = _reference(U64, V64, users, where, form, rw)
    ref.backward()
    assert loss.dtype == torch.float32
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-6)
    np.testing.assert_allclose(U32.grad.numpy(), U64.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(V32.grad.numpy(), V64.grad.numpy(), rtol=1e-5, atol=1e-6)
    # rows never drawn get exactly no gradient
    untouched = torch.ones(U.shape[0], dtype=torch.bool)
    untouched[users] = False
    assert torch.count_nonzero(U32.grad[untouched]) == 0


def test_a_zero_table_has_a_finite_norm_gradient_and_a_fixed_table_gets_none():
    U, V, users, where = _case(3)
    U = torch.zeros_like(U).requires_grad_()
    V = V.clone()  # fixed: no gradient asked for
    loss = pair_rows_loss(U, V, users, where, "norm", 1.0)
    loss.backward()
    assert torch.isfinite(U.grad).all() and V.grad is None
    ref = _reference(U.detach().double(), V.double(), users, where, "norm", 1.0)
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-6)  # the zero user rows add nothing


def test_positions_must_be_two_per_user():
    U, V, users, where = _case(4)
    with pytest.raises(ValueError, match="positions"):
        pair_rows_loss(U, V, users, where[:-1], "norm", 1e-4)


@pytest.mark.parametrize("name", ["vbpr", "bpr"])
@pytest.mark.parametrize("form", ["norm", "mean"])
def test_models_through_the_node_match_their_dense_float64_loss(name, form):
    """BPR and VBPR (which take the node) against their loss written out on full float64 tables."""
    from cliper.testing.backbones import build, make_batch

    model = build(name, reg_weight=0.2, reg_form=form).train()
    batch = make_batch()
    loss = model.calculate_loss(batch)
    loss.backward()
    params = {k: q.detach().double().requires_grad_() for k, q in model.named_parameters()}
    items = params["item_embedding.weight"]
    if name == "vbpr":
        feats = torch.cat([model.features.get("text"), model.features.get("image")], 1).double()
        items = torch.cat([items, feats @ params["projection.weight"].T + params["projection.bias"]], 1)
    b = batch.users.numel()
    ref = _reference(params["user_embedding.weight"], items, batch.users,
                     torch.cat([batch.pos_items, batch.neg_items]), form, 0.2)
    ref.backward()
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-6)
    for k, q in model.named_parameters():
        np.testing.assert_allclose(q.grad.numpy(), params[k].grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=k)
    assert b == batch.pos_items.numel()
