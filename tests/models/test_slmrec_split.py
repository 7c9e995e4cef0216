"""SLMRec's split propagation and one-buffer InfoNCE against plain float64 computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import cliper.testing.backbones as C
from cliper.models.slmrec import _info_nce


def _dense_branches(model, params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """LightGCN of every branch with the dense normalised adjacency: [n_users, B, d], [n_items, B, d]."""
    r = torch.as_tensor(C.data().train_matrix.toarray(), dtype=torch.float64)
    n_users, n_items = r.shape
    a = torch.zeros(n_users + n_items, n_users + n_items, dtype=torch.float64)
    a[:n_users, n_users:], a[n_users:, :n_users] = r, r.T
    deg = a.sum(1)
    inv = torch.where(deg > 0, deg.clamp(min=1) ** -0.5, torch.zeros_like(deg))
    a = inv[:, None] * a * inv[None, :]
    inputs = [params["item_embedding.weight"]]
    for m in model.modal:
        x = F.normalize(model.features.get(m).double(), dim=1)
        inputs.append(x @ params[f"dense.{m}.weight"].T + params[f"dense.{m}.bias"])
    out = []
    for y in inputs:
        e = torch.cat([params["user_embedding.weight"], y], 0)
        total, layer = e, e
        for _ in range(model.params.n_layers):
            layer = a @ layer
            total = total + layer
        out.append(total / (model.params.n_layers + 1))
    out = torch.stack(out, 1)
    return out[:n_users], out[n_users:]


def _dense_loss(model, batch):
    params = {k: p.detach().double().requires_grad_() for k, p in model.named_parameters()}

    def lin(name, x):
        return x @ params[name + ".weight"].T + params[name + ".bias"]

    def nce(a, b, t):
        return F.cross_entropy(a @ b.T / t, torch.arange(a.shape[0]))

    users, items = _dense_branches(model, params)
    u_rows, i_rows = users[batch.users], items[batch.pos_items]
    u = F.normalize(lin("read_user", u_rows.reshape(len(u_rows), -1)), dim=1)
    i = F.normalize(lin("read_item", i_rows.reshape(len(i_rows), -1)), dim=1)
    loss = nce(u, i, model.params.temp)
    joint = lin("fac_joint.0", i_rows[:, 0])
    fac = nce(joint, lin("fac_modal.0", i_rows[:, 1]), model.params.ssl_temp)
    joint = lin("fac_joint.1.1", lin("fac_joint.1.0", joint))
    fac = fac + nce(joint, lin("fac_modal.1", i_rows[:, 2]), model.params.ssl_temp)
    loss = loss + model.params.ssl_alpha * fac
    loss.backward()
    return loss, {k: v.grad for k, v in params.items()}


@pytest.mark.parametrize("n_layers", [1, 3, 2])
def test_loss_and_gradients_match_dense_lightgcn(n_layers):
    """Odd n_layers take the split form, even ones the plain form; both equal the dense formula."""
    model = C.build("slmrec", n_layers=n_layers, ssl_alpha=0.5, ssl_temp=0.5).train()
    assert model._fast() == (n_layers % 2 == 1)
    batch = C.make_batch()
    loss = model.calculate_loss(batch)
    loss.backward()
    ref_loss, ref_grads = _dense_loss(model, batch)
    assert abs(float(loss.detach()) - float(ref_loss.detach())) < 1e-5 * max(1.0, float(ref_loss.detach()))
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad.double(), ref_grads[name], atol=1e-6, rtol=1e-4), name


def test_split_scores_match_dense_lightgcn():
    model = C.build("slmrec", n_layers=3).eval()
    params = {k: p.detach().double() for k, p in model.named_parameters()}
    users, items = _dense_branches(model, params)
    with torch.no_grad():
        u, i, i_br = model.compute()
    assert torch.allclose(i_br.double(), items, atol=1e-6)
    ref_u = users.reshape(len(users), -1) @ params["read_user.weight"].T + params["read_user.bias"]
    ref_i = items.reshape(len(items), -1) @ params["read_item.weight"].T + params["read_item.bias"]
    assert torch.allclose(u.double(), ref_u, atol=1e-5)
    assert torch.allclose(i.double(), ref_i, atol=1e-5)


def test_info_nce_matches_cross_entropy_in_float64():
    torch.manual_seed(0)
    a = (20 * torch.randn(40, 8, dtype=torch.float64)).requires_grad_()  # large logits: the max shift matters
    b = torch.randn(40, 8, dtype=torch.float64, requires_grad=True)
    loss = _info_nce(a, b, 0.2)
    loss.backward()
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ref = F.cross_entropy(a2 @ b2.T / 0.2, torch.arange(40))
    ref.backward()
    assert abs(float(loss.detach()) - float(ref.detach())) < 1e-10
    assert torch.allclose(a.grad, a2.grad, atol=1e-12) and torch.allclose(b.grad, b2.grad, atol=1e-12)


def test_info_nce_under_bf16_autocast_is_as_close_as_the_plain_form():
    torch.manual_seed(0)
    a0, b0 = F.normalize(torch.randn(256, 16), dim=1), F.normalize(torch.randn(256, 16), dim=1)
    errors = []
    for fn in (_info_nce, lambda x, y, t: F.cross_entropy(x @ y.T / t, torch.arange(x.shape[0]))):
        a = a0.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = fn(a, b0, 0.2)
        loss.backward()
        errors.append(a.grad.double())
    a = a0.double().requires_grad_()
    F.cross_entropy(a @ b0.double().T / 0.2, torch.arange(256)).backward()
    fused, plain = ((e - a.grad).norm() / a.grad.norm() for e in errors)
    assert fused < 2 * plain + 1e-3


def test_info_nce_refuses_a_second_backward():
    a = torch.randn(6, 3, requires_grad=True)
    loss = _info_nce(a, torch.randn(6, 3), 0.5)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backpropagated twice"):
        loss.backward()


def test_backward_after_a_later_batch_overwrote_the_kept_rows_is_refused():
    model = C.build("slmrec").train()
    batch = C.make_batch()
    first = model.calculate_loss(batch)
    model.calculate_loss(batch)  # same rows count: the kept buffer is reused
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        first.backward()
