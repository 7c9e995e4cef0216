"""MMGCN's training loss (batch rows of the last layer, the users' fused aggregate + combine with
kept buffers) against a plain dense float64 computation of the whole model: loss and every gradient."""

import numpy as np
import pytest
import torch

from cliper.models.mmgcn import neighbour_operator
from cliper.testing.backbones import build, data, make_batch


def _loss64(model, batch):
    """Loss of ``model`` written plainly in float64: stacked rows, dense operator, every row of every
    layer, then the batch's rows; returns (loss, {name: float64 leaf}) for the trainable tensors."""
    leaves = {n: p.detach().double().requires_grad_(True) for n, p in model.named_parameters()}
    state = {n: b.detach().double() for n, b in model.named_buffers()}
    state.update(leaves)
    a = torch.tensor(neighbour_operator(data().train_matrix, model.params.aggregation).matrix.to_dense().numpy(),
                     dtype=torch.float64)
    slope, ids = model.params.negative_slope, state["id_embedding"]
    act = torch.nn.functional.leaky_relu
    rep = 0.0
    for m in model.used:
        gcn, pre = model.gcns[m], f"gcns.{m}."
        feats = model.features.get(m).detach().double()
        if gcn.projection is not None:
            feats = feats @ state[pre + "projection.weight"].T + state[pre + "projection.bias"]
        x = torch.cat([state[pre + "preference"], feats], 0)
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        for layer in range(len(gcn.conv)):
            w = state[f"{pre}conv.{layer}"]
            w3, b3 = state[f"{pre}linear.{layer}.weight"], state[f"{pre}linear.{layer}.bias"]
            w2, b2 = state[f"{pre}combine.{layer}.weight"], state[f"{pre}combine.{layer}.bias"]
            h = act(a @ (x @ w), slope)
            x_hat = act(x @ w3.T + b3, slope) + ids
            if gcn.concat:
                x = act(torch.cat([h, x_hat], 1) @ w2.T + b2, slope)
            else:
                x = act(h @ w2.T + b2 + x_hat, slope)
        rep = rep + x
    rep = rep / len(model.used)
    n_users = model.n_users
    u, i = rep[:n_users][batch.users], rep[n_users:]
    pos, neg = (u * i[batch.pos_items]).sum(1), (u * i[batch.neg_items]).sum(1)
    loss = -torch.nn.functional.logsigmoid(pos - neg).mean()
    reg = (ids[batch.users] ** 2).mean() + 0.5 * ((ids[n_users + batch.pos_items] ** 2).mean()
                                                  + (ids[n_users + batch.neg_items] ** 2).mean())
    penalised = model.used if model.params.preference_penalty == "all" else [m for m in model.used if m == "image"]
    reg = reg + sum((state[f"gcns.{m}.preference"] ** 2).mean() for m in penalised)
    return loss + model.params.reg_weight * reg, leaves


CASES = [{}, {"combination": "add", "aggregation": "add", "n_layers": 1}, {"n_layers": 1},
         {"train_ids": True, "reg_weight": 0.1}, {"image_latent_dim": None, "text_latent_dim": 5, "n_layers": 2},
         {"preference_penalty": "all", "train_ids": True}]


@pytest.mark.parametrize("params", CASES, ids=[str(c) for c in CASES])
def test_training_loss_and_every_gradient_equal_float64_dense(params):
    model = build("mmgcn", embedding_dim=6, **params)
    model.train()
    for seed in (0, 1):  # a second batch reuses the kept buffers
        batch = make_batch(seed)
        model.zero_grad(set_to_none=True)
        loss = model.calculate_loss(batch)
        loss.backward()
        ref, leaves = _loss64(model, batch)
        ref.backward()
        assert np.isclose(float(loss.detach()), float(ref.detach()), rtol=0, atol=1e-6)
        got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        want = {n: t.grad for n, t in leaves.items() if t.grad is not None}
        assert got.keys() == want.keys() and len(got) > 0
        for name, g in want.items():
            scale = float(g.abs().max()) + 1e-12
            assert float((got[name].double() - g).abs().max()) <= 1e-4 * scale + 1e-9, name


def test_fused_user_layer_is_used_and_keeps_its_buffers_between_batches():
    model = build("mmgcn", embedding_dim=6)
    model.train()
    model.calculate_loss(make_batch(0)).backward()
    kept = {k: v.data_ptr() for k, v in model.gcns["text"].kept._buffers.items()}
    assert set(kept) == {"h0", "h1"}  # every layer but the last (batch rows) takes the fused path
    model.calculate_loss(make_batch(1)).backward()
    assert {k: v.data_ptr() for k, v in model.gcns["text"].kept._buffers.items()} == kept
    assert model.gcns["text"].scratch is model.gcns["image"].scratch  # one gradient buffer for all


def test_backward_after_a_later_forward_is_refused():
    """The kept buffer saved by the first forward is overwritten by the second: autograd's in-place
    check must refuse the stale backward instead of returning wrong gradients."""
    model = build("mmgcn", embedding_dim=6)
    model.train()
    first = model.calculate_loss(make_batch(0))
    model.calculate_loss(make_batch(1))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        first.backward()


def test_scoring_drops_training_buffers_and_matches_full_propagation():
    model = build("mmgcn", embedding_dim=6)
    model.train()
    model.calculate_loss(make_batch(0)).backward()
    model.eval()
    with torch.no_grad():
        users, items = model.score_embeddings()
    assert not model.gcns["text"].kept._buffers and model.gcns["text"].scratch._flat is None
    model.train()
    with torch.no_grad():
        full_u, full_i = model.propagate()
    assert torch.allclose(users, full_u, atol=1e-6) and torch.allclose(items, full_i, atol=1e-6)


def test_one_scratch_buffer_serves_every_width():
    model = build("mmgcn", embedding_dim=6)
    model.train()
    model.calculate_loss(make_batch(0)).backward()
    scratch = model.gcns["image"].scratch
    flat = scratch._flat
    assert flat is not None and flat.numel() == model.n_users * max(model.features.dim("text"), model.params.image_latent_dim)
    wide = scratch.get(torch.empty(model.n_users, model.features.dim("text")))
    narrow = scratch.get(torch.empty(model.n_users, 6))
    assert wide.data_ptr() == narrow.data_ptr() == flat.data_ptr() and narrow.shape == (model.n_users, 6)


def test_rows_block_is_the_rows_of_the_block_with_repeats():
    model = build("mmgcn", embedding_dim=6)
    block = model.blocks[0]
    rows = torch.tensor([3, 0, 3, 7])
    part = block.rows(rows)
    dense = torch.tensor(block.graph.matrix.to_dense().numpy(), dtype=torch.float64)
    assert torch.equal(part.graph.matrix.to_dense().double(), dense[rows])
    x = torch.randn(block.shape[1], 5, dtype=torch.float32, requires_grad=True)
    y = part @ x
    probe = torch.randn(4, 5)
    (y * probe).sum().backward()
    assert torch.allclose(y.double(), dense[rows] @ x.detach().double(), atol=1e-6)
    assert torch.allclose(x.grad.double(), dense[rows].T @ probe.double(), atol=1e-6)
