"""BM3 projects each distinct batch item once: loss and gradients equal projecting every item and indexing."""

import torch
import torch.nn.functional as F

from cliper.models import Batch
from cliper.testing.backbones import build


def _plain_loss(model, batch):
    """BM3's loss written plainly (all items projected, rows picked by fancy indexing)."""
    p = model.params
    users_all, items_all = model.propagate()
    u, i = users_all[batch.users], items_all[batch.pos_items]
    with torch.no_grad():
        u_t, i_t = F.dropout(u, p.dropout), F.dropout(i, p.dropout)

    def cos(a, b):
        return 1.0 - F.cosine_similarity(a, b.detach(), dim=-1).mean()

    loss = cos(model.predictor(u), i_t) + cos(model.predictor(i), u_t)
    mm = 0.0
    for m in model.modal:
        f = model.projections[m](model.features.get(m))[batch.pos_items]
        with torch.no_grad():
            f_t = F.dropout(f, p.dropout)
        f_on = model.predictor(f)
        mm = mm + cos(f_on, i_t) + cos(f_on, f_t)
    reg = (users_all.norm() + items_all.norm()) / model.n_items
    return loss + p.reg_weight * reg + p.cl_weight * mm


def test_repeated_items_match_plain_projection():
    model = build("bm3")
    items = torch.tensor([3, 3, 0, 7, 3, 0, 12, 7])  # repeats, unsorted
    batch = Batch(torch.arange(8), items, torch.zeros(8, dtype=torch.long))

    def run(fn):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(7)  # same dropout masks: both draw the same shapes in the same order
        loss = fn(model, batch) if fn is _plain_loss else model.calculate_loss(batch)
        loss.backward()
        return loss.detach(), {n: q.grad.clone() for n, q in model.named_parameters() if q.grad is not None}

    fast_loss, fast = run(None)
    plain_loss, plain = run(_plain_loss)
    assert torch.allclose(fast_loss, plain_loss, atol=1e-6)
    assert fast.keys() == plain.keys() and any(n.startswith("projections") for n in fast)
    for name in plain:
        assert torch.allclose(fast[name], plain[name], atol=1e-6), name
