"""modal.projected_features: W (x + r) + b computed as W x + b + W r, without the [N, d] sum."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cliper.features.item_features import ItemFeatures
from cliper.models import fused_ops
from cliper.models.modal import feature_residuals, projected_features


def _setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = ItemFeatures(image=torch.randn(37, 24, generator=g), text=torch.randn(37, 8, generator=g))
    res = feature_residuals(feats, ["image", "text"], True)
    with torch.no_grad():
        for p in res.values():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))  # a trained, non-zero residual
    w = torch.randn(5, 24, generator=g, requires_grad=True)
    b = torch.randn(5, generator=g, requires_grad=True)
    return feats, res, w, b


@pytest.mark.parametrize("linear", [F.linear, fused_ops.linear], ids=["F.linear", "oneDNN"])
def test_value_and_gradients_equal_the_product_of_the_sum(linear):
    feats, res, w, b = _setup()
    up = torch.randn(37, 5, dtype=torch.float64)
    got = projected_features(feats, res, "image", w, b, linear)
    (got.double() * up).sum().backward()
    grads = [t.grad.clone() for t in (res["image"], w, b)]
    for t in (res["image"], w, b):
        t.grad = None
    # the reference: the sum itself, in float64
    x64 = feats.get("image").double() + res["image"].double()
    ref = x64 @ w.double().T + b.double()
    assert torch.allclose(got.double(), ref, atol=1e-5, rtol=1e-5)
    want = [up @ w.double(), up.T @ x64, up.sum(0)]  # d/dr, d/dW, d/db
    for g_, w_ in zip(grads, want):
        assert torch.allclose(g_.double(), w_, atol=1e-4, rtol=1e-5)


def test_without_residuals_it_is_the_plain_projection():
    feats, _, w, b = _setup(1)
    got = projected_features(feats, None, "image", w, b)
    assert torch.equal(got, F.linear(feats.get("image"), w, b))


def test_the_residual_moves_the_projection():
    feats, res, w, b = _setup(2)
    with_r = projected_features(feats, res, "image", w, b)
    without = projected_features(feats, None, "image", w, b)
    assert (with_r - without).abs().max() > 1e-2
