"""SLMRec's in-batch InfoNCE over distinct rows (``_counted_info_nce``) against the plain float64
cross-entropy over the batch's duplicated rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import cliper.testing.backbones as C
from cliper.models.slmrec import _counted_info_nce


def _distinct(ids: torch.Tensor):
    uniq, inv, count = torch.unique(ids, return_inverse=True, return_counts=True)
    return uniq, inv, count.double()


def _batch(seed: int, n: int = 48, n_users: int = 15, n_items: int = 11):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(n_users, (n,), generator=g), torch.randint(n_items, (n,), generator=g)


def _assert_cross_entropy(loss, a, b, rows_a, rows_b, temp):
    """``loss`` and the gradients it leaves on a, b equal (float64) cross-entropy over the duplicated rows."""
    loss.backward()
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ref = F.cross_entropy(a2[rows_a] @ b2[rows_b].T / temp, torch.arange(len(rows_a)))
    ref.backward()
    assert abs(loss.item() - ref.item()) < 1e-9 * max(1.0, abs(ref.item()))
    assert torch.allclose(a.grad, a2.grad, atol=1e-9) and torch.allclose(b.grad, b2.grad, atol=1e-9)


@pytest.mark.parametrize("scale", [1.0, 30.0, 400.0])  # unshifted, max-shifted, floor-clamped logits
def test_pairs_match_cross_entropy_over_the_duplicated_rows(scale):
    users, items = _batch(0)
    torch.manual_seed(1)
    a = (scale * F.normalize(torch.randn(15, 8, dtype=torch.float64), dim=1)).requires_grad_()
    b = F.normalize(torch.randn(11, 8, dtype=torch.float64), dim=1).requires_grad_()
    ua, u_inv, u_count = _distinct(users)
    ib, i_inv, i_count = _distinct(items)
    loss = _counted_info_nce(a[ua], b[ib], 0.2, u_count, i_count, (u_inv, i_inv), len(users))
    _assert_cross_entropy(loss, a, b, users, items, 0.2)
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_diagonal_pairs_match_cross_entropy():
    """FAC's form: both sides are functions of the same item row, pair k is (k, k)."""
    _, items = _batch(2)
    torch.manual_seed(3)
    a = (5 * torch.randn(11, 4, dtype=torch.float64)).requires_grad_()  # unnormalised, as FAC's maps
    b = torch.randn(11, 4, dtype=torch.float64, requires_grad=True)
    ib, _, count = _distinct(items)
    loss = _counted_info_nce(a[ib], b[ib], 0.1, count, count, None, len(items))
    _assert_cross_entropy(loss, a, b, items, items, 0.1)


def test_float32_with_spread_logits_stays_within_rounding_of_float64():
    """Logits spread far below -88 (torch's exp slow path) are clamped: no visible change."""
    users, items = _batch(4, n=256, n_users=90, n_items=70)
    torch.manual_seed(5)
    a, b = 40 * torch.randn(90, 16), torch.randn(70, 16)
    ua, u_inv, u_count = _distinct(users)
    ib, i_inv, i_count = _distinct(items)
    got = _counted_info_nce(a[ua], b[ib], 0.1, u_count.float(), i_count.float(), (u_inv, i_inv), 256)
    ref = F.cross_entropy(a.double()[users] @ b.double()[items].T / 0.1, torch.arange(256))
    assert torch.isfinite(got) and abs(float(got) - float(ref)) < 1e-5 * float(ref)


def test_under_bf16_autocast_is_as_close_as_the_plain_form():
    users, items = _batch(6, n=256, n_users=120, n_items=90)
    torch.manual_seed(7)
    a0, b0 = F.normalize(torch.randn(120, 16), dim=1), F.normalize(torch.randn(90, 16), dim=1)
    ua, u_inv, u_count = _distinct(users)
    ib, i_inv, i_count = _distinct(items)
    ref_a = a0.double().requires_grad_()
    F.cross_entropy(ref_a[users] @ b0.double()[items].T / 0.2, torch.arange(256)).backward()
    errors = []
    for counted in (True, False):
        a = a0.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if counted:
                loss = _counted_info_nce(a[ua], b0[ib], 0.2, u_count.float(), i_count.float(), (u_inv, i_inv), 256)
            else:
                loss = F.cross_entropy(a[users] @ b0[items].T / 0.2, torch.arange(256))
        loss.backward()
        errors.append(float((a.grad.double() - ref_a.grad).norm() / ref_a.grad.norm()))
    assert errors[0] < 2 * errors[1] + 1e-3


def test_refuses_a_second_backward():
    a = torch.randn(6, 3, requires_grad=True)
    loss = _counted_info_nce(a, torch.randn(5, 3), 0.5, torch.ones(6), torch.ones(5),
                             (torch.arange(5), torch.arange(5)), 5)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backpropagated twice"):
        loss.backward()


def test_model_loss_with_repeated_pairs_equals_the_expanded_batch_loss():
    """A batch of the same pairs twice over has the same mean loss as the pairs once (the
    distinct-row form weights every duplicate); the plain form (split off) agrees."""
    model = C.build("slmrec", ssl_alpha=0.5).train()
    batch = C.make_batch(size=32)
    doubled = type(batch)(*(torch.cat([x, x]) for x in (batch.users, batch.pos_items, batch.neg_items)))
    with torch.no_grad():
        once, twice = float(model.calculate_loss(batch)), float(model.calculate_loss(doubled))
        model.split_propagation = False
        plain = float(model.calculate_loss(doubled))
    # not equal to "once": doubling adds each item's duplicate as an in-batch negative (log 2 shift)
    assert abs(twice - plain) < 1e-5 * abs(plain)
    assert abs(twice - once) > 1e-3


@pytest.mark.parametrize("n", [64, 65, 127])
def test_row_counts_on_and_off_the_padding_step_match_cross_entropy(n):
    """Rows are padded to a multiple of 64 (oneDNN's shape cache): none, one and 63 padding rows."""
    torch.manual_seed(n)
    a = (30 * torch.randn(n, 4, dtype=torch.float64)).requires_grad_()
    b = torch.randn(n, 4, dtype=torch.float64, requires_grad=True)
    ones = torch.ones(n, dtype=torch.float64)
    loss = _counted_info_nce(a, b, 0.5, ones, ones, (torch.arange(n), torch.arange(n)), n)
    loss.backward()
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ref = F.cross_entropy(a2 @ b2.T / 0.5, torch.arange(n))
    ref.backward()
    assert abs(loss.item() - ref.item()) < 1e-9 * max(1.0, abs(ref.item()))
    assert torch.allclose(a.grad, a2.grad, atol=1e-9) and torch.allclose(b.grad, b2.grad, atol=1e-9)


def test_projected_rows_are_padded_with_zero_rows():
    model = C.build("slmrec").train()
    batch = C.make_batch()
    users, items = torch.unique(batch.users), torch.unique(batch.pos_items)
    over_items, _ = model._selectors(users, items)
    model._rows_buffers.get("image", 64, torch.empty(0, 16), 64).fill_(float("nan"))  # stale garbage
    rows = model._rows_of(over_items, model._smoothed()["image"], "image")
    n = over_items.shape[0]
    assert rows.shape[0] % 64 == 0 and rows.shape[0] >= n
    assert torch.equal(rows[n:], torch.zeros_like(rows[n:]))
