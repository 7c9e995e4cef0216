"""VBPR's training projection (_GatherProject) against a plain float64 computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cliper.testing.backbones import build, make_batch


def _dense_loss(model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """BPR + L2 (norm form) written out in float64 on the concatenated [text ; image] features."""
    params = {k: p.detach().double().requires_grad_() for k, p in model.named_parameters()}
    feats = torch.cat([model.features.get("text"), model.features.get("image")], 1).double()
    item_vec = torch.cat([params["item_embedding.weight"],
                          feats @ params["projection.weight"].T + params["projection.bias"]], 1)
    u = params["user_embedding.weight"][batch.users]
    p, q = item_vec[batch.pos_items], item_vec[batch.neg_items]
    loss = -F.logsigmoid((u * p).sum(1) - (u * q).sum(1)).mean()
    loss = loss + model.params.reg_weight * (u.norm() + p.norm() + q.norm()) / p.shape[0]
    loss.backward()
    return loss, {k: v.grad for k, v in params.items()}


def test_loss_and_gradients_match_dense_formula():
    model = build("vbpr", reg_weight=0.1).train()
    batch = make_batch()
    loss = model.calculate_loss(batch)
    loss.backward()
    ref_loss, ref_grads = _dense_loss(model, batch)
    assert abs(float(loss.detach()) - float(ref_loss.detach())) < 1e-5
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad.double(), ref_grads[name], atol=1e-6, rtol=1e-4), name


def test_backward_after_a_later_gather_is_refused():
    """The gathered rows live in buffers kept between batches: a backward after the next forward
    overwrote them must fail loudly instead of using the wrong rows."""
    model = build("vbpr").train()
    first = model.calculate_loss(make_batch(seed=0))
    model.calculate_loss(make_batch(seed=1))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        first.backward()


def test_bf16_autocast_matches_autocast_of_the_plain_path():
    model = build("vbpr").train()
    batch = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = model.calculate_loss(batch)
    fast.backward()
    fast_grad = model.projection.weight.grad.clone()
    model.zero_grad()
    model.gather_project = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model.calculate_loss(batch)
    plain.backward()
    assert abs(float(fast.detach()) - float(plain.detach())) < 1e-3
    rel = (fast_grad - model.projection.weight.grad).norm() / model.projection.weight.grad.norm()
    assert rel < 2e-2


def test_bf16_rows_follow_an_in_place_change_of_the_tables():
    """Under autocast the rows come from a bf16 copy of each table, cast once and made again after
    the table changes in place (layers.CastCopy)."""
    model = build("vbpr").train()
    rows = torch.tensor([0, 3, 5])
    image = model.features.get("image")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = [b.clone() for b in model._gather(rows, torch.bfloat16)]
        assert all(b.dtype == torch.bfloat16 for b in first)
        with torch.no_grad():
            image.mul_(2.0)
        again = model._gather(rows, torch.bfloat16)
    i = model.used.index("image")
    assert torch.equal(again[i][:3], image[rows].to(torch.bfloat16))
    assert not torch.equal(again[i][:3], first[i][:3])


def test_gathered_rows_are_padded_with_zero_rows_to_a_recurring_shape():
    """oneDNN keeps a kernel per product shape: the batch's rows are padded with zero rows to a
    multiple of fused_ops.ROW_STEP, so the shapes recur (the process grew per batch before)."""
    from cliper.models.fused_ops import ROW_STEP

    model = build("vbpr").train()
    table = model.features.get("image")
    for n in sorted({1, 7, table.shape[0]}):  # distinct items: at most the catalogue
        rows = torch.randperm(table.shape[0])[:n].sort().values
        for m, block in zip(model.used, model._gather(rows, None)):
            assert block.shape[0] % ROW_STEP == 0 and block.shape[0] >= n
            assert torch.equal(block[:n], model.features.get(m)[rows])
            assert not block[n:].any()  # the padding rows are zero: they add nothing to the weight gradient
            assert torch.count_nonzero(block[n:]) == 0
