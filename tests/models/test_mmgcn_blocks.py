"""MMGCN's block-wise propagation against the stacked dense computation (values and gradients)."""

import pytest
import torch
import torch.nn.functional as F

from cliper.models.mmgcn import neighbour_blocks, neighbour_operator
from cliper.testing.backbones import build, data, make_batch


def _dense_propagate(model):
    """MMGCN written plainly: x = normalize([pref; feats]), full dense operator, stacked rows."""
    a = torch.tensor(neighbour_operator(data().train_matrix, model.params.aggregation).matrix.to_dense().numpy())
    slope = model.params.negative_slope
    rep = 0
    for m in model.used:
        gcn = model.gcns[m]
        f = model.features.get(m)
        feats = gcn.projection(f) if gcn.projection is not None else f
        x = F.normalize(torch.cat([gcn.preference, feats], 0))
        for w, lin, comb in zip(gcn.conv, gcn.linear, gcn.combine):
            h = F.leaky_relu(a @ (x @ w), slope)
            x_hat = F.leaky_relu(lin(x), slope) + model.id_embedding
            if gcn.concat:
                x = F.leaky_relu(comb(torch.cat([h, x_hat], 1)), slope)
            else:
                x = F.leaky_relu(comb(h) + x_hat, slope)
        rep = rep + x
    rep = rep / len(model.used)
    return rep[: model.n_users], rep[model.n_users :]


@pytest.mark.parametrize("params", [{}, {"combination": "add", "aggregation": "add", "n_layers": 1}, {"train_ids": True},
                                    {"image_latent_dim": None, "text_latent_dim": 5}])
def test_blocks_equal_dense_values_and_gradients(params):
    model = build("mmgcn", embedding_dim=6, **params)
    users, items = model.propagate()
    ref_u, ref_i = _dense_propagate(model)
    assert torch.allclose(users, ref_u, atol=1e-5) and torch.allclose(items, ref_i, atol=1e-5)
    b = make_batch()
    probe = torch.randn_like(users), torch.randn_like(items)

    def grads(u, i):
        model.zero_grad(set_to_none=True)
        ((u * probe[0]).sum() + (i * probe[1]).sum()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast, ref = grads(*model.propagate()), grads(*_dense_propagate(model))
    assert fast.keys() == ref.keys() and len(fast) > 0
    for name in ref:
        assert torch.allclose(fast[name], ref[name], atol=1e-5), name
    assert torch.isfinite(model.calculate_loss(b))


def test_blocks_are_the_operator_off_diagonals():
    train = data().train_matrix
    n = train.shape[0]
    for aggregation in ("mean", "add"):
        full = neighbour_operator(train, aggregation).matrix.to_dense()
        ui, iu = (g.graph.matrix.to_dense() for g in neighbour_blocks(train, aggregation))
        assert torch.equal(ui, full[:n, n:]) and torch.equal(iu, full[n:, :n])
        assert not full[:n, :n].any() and not full[n:, n:].any()


def test_frozen_input_is_normalised_once_and_follows_new_features():
    model = build("mmgcn", embedding_dim=6)
    gcn = model.gcns["text"]  # unprojected by default
    f = model.features.get("text")
    first = gcn.item_input(f)
    assert gcn.item_input(f) is first and not first.requires_grad
    assert torch.allclose(first, F.normalize(f))
    with torch.no_grad():
        f.mul_(2.0).add_(1.0)  # an in-place change of the features is seen
    assert torch.allclose(gcn.item_input(f), F.normalize(f))

