"""The fused kernels give the plain torch results (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cliper.models.fused_ops import cosine_logsumexp, feature_matmul


def test_feature_matmul_matches_plain_product_and_grads():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 33, generator=g, requires_grad=True)
    w = torch.randn(33, 4, generator=g, requires_grad=True)
    out = feature_matmul(x, w)
    torch.testing.assert_close(out, x @ w)
    gx, gw = torch.autograd.grad((out * torch.arange(4.0)).sum(), (x, w))
    rx, rw = torch.autograd.grad(((x @ w) * torch.arange(4.0)).sum(), (x, w))
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gw, rw)


@pytest.mark.parametrize("tau", [0.2, 0.01])  # 0.01: 1/t over the no-max bound, the shifted path
def test_cosine_logsumexp_matches_dense(tau):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(7, 5, generator=g, requires_grad=True)
    c = torch.randn(11, 5, generator=g, requires_grad=True)
    weights = torch.rand(7, generator=g)
    out = cosine_logsumexp(a, c, tau)
    ref = torch.logsumexp(F.normalize(a, dim=1) @ F.normalize(c, dim=1).T / tau, dim=1)
    torch.testing.assert_close(out, ref)
    ga, gc = torch.autograd.grad((out * weights).sum(), (a, c))
    ra, rc = torch.autograd.grad((ref * weights).sum(), (a, c))
    torch.testing.assert_close(ga, ra, rtol=1e-5, atol=1e-4)  # gradients ~1/t in size: float32 rounding
    torch.testing.assert_close(gc, rc, rtol=1e-5, atol=1e-4)
    assert torch.isfinite(out).all()


def test_in_batch_info_nce_matches_the_ratio_form():
    """The authors' form: mean_i -log(exp(cos_ii / t) / sum_j exp(cos_ij / t))."""
    from cliper.models.fused_ops import in_batch_info_nce

    g = torch.Generator().manual_seed(2)
    v1 = torch.randn(9, 6, generator=g, requires_grad=True)
    v2 = torch.randn(9, 6, generator=g, requires_grad=True)
    out = in_batch_info_nce(v1, v2, 0.2)
    z1, z2 = F.normalize(v1, dim=1), F.normalize(v2, dim=1)
    ref = -torch.log(torch.exp((z1 * z2).sum(1) / 0.2) / torch.exp(z1 @ z2.T / 0.2).sum(1)).mean()
    torch.testing.assert_close(out, ref)
    for a, b in zip(torch.autograd.grad(out, (v1, v2)), torch.autograd.grad(ref, (v1, v2))):
        torch.testing.assert_close(a, b)


def test_cosine_logsumexp_stays_float32_under_bf16_autocast():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(6, 4, generator=g, requires_grad=True)
    c = torch.randn(8, 4, generator=g)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = cosine_logsumexp(a, c, 0.2)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.logsumexp(F.normalize(a, dim=1) @ F.normalize(c, dim=1).T / 0.2, 1))
    (grad,) = torch.autograd.grad(out.sum(), a)
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()


def _float64_nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() @ b.double().T).float()


@pytest.mark.parametrize("onednn", [None, False])  # None: probed (oneDNN where torch has it); False: the plain path
def test_matmul_nt_matches_a_float64_product(monkeypatch, onednn):
    from cliper.models import fused_ops

    monkeypatch.setattr(fused_ops, "_ONEDNN", onednn)
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(37, 29, generator=g), torch.randn(11, 29, generator=g)
    bias = torch.randn(11, generator=g)
    torch.testing.assert_close(fused_ops.matmul_nt(a, b), _float64_nt(a, b))
    torch.testing.assert_close(fused_ops.matmul_nt(a, b, bias), _float64_nt(a, b) + bias)
    wide = torch.randn(29, 11, generator=g)  # b given as a transposed view, as the InfoNCE backward does
    torch.testing.assert_close(fused_ops.matmul_nt(a, wide.T), (a.double() @ wide.double()).float())


@pytest.mark.parametrize("width", [40, 1100])  # under and over WIDE_INPUT: MKL's and oneDNN's product
def test_weight_grad_matches_a_float64_product(width):
    from cliper.models.fused_ops import WIDE_INPUT, weight_grad

    assert 40 < WIDE_INPUT <= 1100
    g = torch.Generator().manual_seed(3)
    grad, x = torch.randn(53, 7, generator=g), torch.randn(53, width, generator=g)
    torch.testing.assert_close(weight_grad(grad, x), (grad.double().T @ x.double()).float())


def test_onednn_products_stay_off_under_autocast_and_for_low_precision():
    from cliper.models import fused_ops

    a, b = torch.randn(4, 3), torch.randn(5, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_ops._onednn_for(a, b)
        assert fused_ops.matmul_nt(a, b).dtype == torch.bfloat16  # autocast's own product
    assert not fused_ops._onednn_for(a.bfloat16(), b.bfloat16())
    assert not fused_ops._onednn_for(a.double(), b.double())


@pytest.mark.parametrize("x_grad", [True, False])  # a trainable input, and a fixed one (item features)
@pytest.mark.parametrize("width", [9, 1030])  # the weight gradient by MKL's and by oneDNN's product
def test_linear_matches_float64_values_and_gradients(x_grad, width):
    from cliper.models.fused_ops import linear

    g = torch.Generator().manual_seed(4)
    x = torch.randn(31, width, generator=g).requires_grad_(x_grad)
    w = torch.randn(5, width, generator=g, requires_grad=True)
    b = torch.randn(5, generator=g, requires_grad=True)
    weights = torch.randn(31, 5, generator=g)
    out = linear(x, w, b)
    ref = x.detach().double() @ w.detach().double().T + b.detach().double()
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-4)
    grads = torch.autograd.grad((out * weights).sum(), [t for t in (x, w, b) if t.requires_grad])
    want = [weights.double() @ w.detach().double()] if x_grad else []
    want += [weights.double().T @ x.detach().double(), weights.double().sum(0)]
    for got, exp in zip(grads, want):
        torch.testing.assert_close(got.double(), exp, rtol=1e-5, atol=1e-4)
