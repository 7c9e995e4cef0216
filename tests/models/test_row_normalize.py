"""``row_normalize`` (hand-written backward) against torch's F.normalize, alone and inside GRCN / MMGCN."""

import pytest
import torch
import torch.nn.functional as F

import cliper.models.grcn as grcn_module
import cliper.models.mmgcn as mmgcn_module
from cliper.models.layers import row_normalize
from cliper.testing.backbones import build, make_batch


def test_equals_torch_value_and_gradient_with_zero_rows():
    x = torch.randn(6, 5, dtype=torch.float64)
    x[2] = 0.0  # F.normalize clamps the norm at eps
    x[4] *= 1e-14  # below eps as well
    g = torch.randn(6, 5, dtype=torch.float64)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = row_normalize(a), F.normalize(b, dim=1)
    assert torch.equal(ya, yb)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name, module", [("grcn", grcn_module), ("mmgcn", mmgcn_module)])
def test_model_gradients_equal_torch_normalize(name, module, monkeypatch):
    model = build(name)
    batch = make_batch()

    def grads():
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        loss = model.calculate_loss(batch)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast_loss, fast = grads()
    monkeypatch.setattr(module, "row_normalize", lambda x: F.normalize(x, dim=1))
    plain_loss, plain = grads()
    assert torch.allclose(fast_loss, plain_loss, atol=1e-6)
    assert fast.keys() == plain.keys()
    for n in plain:
        assert torch.allclose(fast[n], plain[n], atol=1e-6), n
