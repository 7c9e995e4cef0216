"""Training steps of the graph models (fast sparse paths) against dense re-computations.

Each model's loss and gradients are recomputed here with the dense normalised adjacency
and plain torch operations on the tiny graph; the fast path (int32 CSR products,
layer_sum, gathered rows) must give the same numbers to float tolerance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import cliper.testing.backbones as C
from cliper.graphs.adjacency import normalized_bipartite
from cliper.models.layers import bpr_loss


def _dense_adjacency() -> torch.Tensor:
    return torch.tensor(normalized_bipartite(C.data().train_matrix).toarray())


def _powers(a: torch.Tensor, x: torch.Tensor, n_layers: int) -> list[torch.Tensor]:
    out = [x]
    for _ in range(n_layers):
        out.append(a @ out[-1])
    return out


def _grads(model) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol), k


def _loss_and_grads(model, batch):
    """The model's own loss on ``batch`` and its gradients; the model is left with none."""
    loss = model.calculate_loss(batch)
    loss.backward()
    grads = _grads(model)
    model.zero_grad()
    return loss, grads


def test_lightgcn_loss_and_gradients_match_dense():
    model = C.build("lightgcn", n_layers=3, reg_weight=0.0)
    batch = C.make_batch()
    loss, fast = _loss_and_grads(model, batch)
    a = _dense_adjacency().float()
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    out = sum(_powers(a, ego, 3)) / 4
    u, i = out[: model.n_users], out[model.n_users:]
    ub = u[batch.users]
    ref = bpr_loss((ub * i[batch.pos_items]).sum(1), (ub * i[batch.neg_items]).sum(1))
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-6)
    _close(fast, _grads(model), 1e-6)


def test_slmrec_fac_loss_and_gradients_match_dense():
    model = C.build("slmrec", n_layers=2, ssl_task="FAC", ssl_alpha=0.5)
    batch = C.make_batch()
    loss, fast = _loss_and_grads(model, batch)
    a = _dense_adjacency().float()
    users = model.user_embedding.weight
    branches = [sum(_powers(a, torch.cat([users, x]), 2)) / 3 for x in model._item_inputs()]
    nodes = torch.stack(branches, 1)  # [n, B, d]
    u_br, i_br = nodes[: model.n_users], nodes[model.n_users:]
    u_all = model.read_user(u_br.reshape(model.n_users, -1))  # read-out of every row, then the batch's
    i_all = model.read_item(i_br.reshape(model.n_items, -1))
    u = F.normalize(u_all[batch.users], dim=1)
    i = F.normalize(i_all[batch.pos_items], dim=1)
    logits = u @ i.T / model.params.temp
    ref = F.cross_entropy(logits, torch.arange(len(batch.users)))
    ref = ref + 0.5 * model._fac(i_br[batch.pos_items])
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-5)
    _close(fast, _grads(model), 1e-5)


def test_dualgnn_propagation_and_gradients_match_dense():
    model = C.build("dualgnn", n_layers=2, k=5)
    a = _dense_adjacency().float()
    ug = torch.tensor(model.user_graph_matrix.toarray(), dtype=torch.float32)
    users, items = model.propagate()
    w_u, w_i = torch.randn_like(users), torch.randn_like(items)
    ((users * w_u).sum() + (items * w_i).sum()).backward()
    fast = _grads(model)
    model.zero_grad()
    reps = []
    for m in model.used:
        enc = model.encoders[m]
        feats = enc.mlp_out(F.leaky_relu(enc.mlp_in(model.features.get(m))))
        reps.append(sum(_powers(a, F.normalize(torch.cat([enc.preference, feats])), 2)))
    ref_items = sum(r[model.n_users:] for r in reps)
    stacked = torch.stack([r[: model.n_users] for r in reps], 1)
    ref_users = (stacked * model.user_modality_weight.unsqueeze(2)).sum(1)
    ref_users = ref_users + ug @ ref_users
    assert torch.allclose(users, ref_users, atol=1e-5) and torch.allclose(items, ref_items, atol=1e-5)
    ((ref_users * w_u).sum() + (ref_items * w_i).sum()).backward()
    _close(fast, _grads(model), 1e-4)


def test_bpr_loss_and_gradients_match_direct_rows():
    model = C.build("bpr", reg_weight=0.0)
    batch = C.make_batch()
    loss, fast = _loss_and_grads(model, batch)
    users, items = model.user_embedding.weight, model.item_embedding.weight
    u, p, n = users[batch.users], items[batch.pos_items], items[batch.neg_items]
    ref = -torch.log(torch.sigmoid((u * p).sum(1) - (u * n).sum(1))).mean()
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-6)
    _close(fast, _grads(model), 1e-6)
