"""MMGCN's fast paths against plain dense float64 computations: the per-direction block kernels,
the oneDNN image projection, the cached constants of a fixed preference table, the bf16 cast."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cliper.models import fused_ops
from cliper.models.mmgcn import neighbour_blocks, project
from cliper.testing.backbones import build, data, make_batch
from test_mmgcn_blocks import _dense_propagate  # the plain dense MMGCN (tests/models on sys.path)


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


@pytest.mark.parametrize("aggregation", ["mean", "add"])
def test_block_products_and_gradients_equal_dense(aggregation, threads):
    train = data().train_matrix
    for block in neighbour_blocks(train, aggregation):
        dense = torch.tensor(block.graph.matrix.to_dense().numpy(), dtype=torch.float64)
        rows_out, rows_in = block.shape
        x = torch.randn(rows_in, 7, requires_grad=True)
        y = block @ x
        assert torch.allclose(y.double(), dense @ x.detach().double(), atol=1e-5)
        probe = torch.randn(rows_out, 7)
        (y * probe).sum().backward()
        assert torch.allclose(x.grad.double(), dense.T @ probe.double(), atol=1e-5)
        with torch.no_grad():
            assert torch.allclose(block.product(probe, transpose=True).double(), dense.T @ probe.double(), atol=1e-5)


def test_bag_and_mkl_kernels_agree_and_out_is_written():
    """The embedding_bag product (CPU default) and MKL's CSR one (the ``out=`` form) agree; ``out``
    is the tensor returned, in both directions."""
    train = data().train_matrix
    for block in neighbour_blocks(train, "mean"):
        for transpose in (False, True):
            rows_out, rows_in = block.shape[::-1] if transpose else block.shape
            x = torch.randn(rows_in, 5)
            bag = block.product(x, transpose=transpose)
            out = torch.full((rows_out, 5), float("nan"))
            assert block.product(x, transpose=transpose, out=out) is out
            assert torch.allclose(bag, out, atol=1e-6) and torch.isfinite(out).all()


def test_projection_equals_dense_with_weight_and_bias_gradients():
    torch.manual_seed(0)
    x = torch.rand(60, 48)
    lin = torch.nn.Linear(48, 8)
    out = project(x, lin)
    w, b = lin.weight.detach().double(), lin.bias.detach().double()
    assert torch.allclose(out.double(), x.double() @ w.T + b, atol=1e-5)
    probe = torch.randn(60, 8)
    (out * probe).sum().backward()
    assert torch.allclose(lin.weight.grad.double(), probe.double().T @ x.double(), atol=1e-4)
    assert torch.allclose(lin.bias.grad.double(), probe.double().sum(0), atol=1e-5)


def test_projection_falls_back_where_its_kernel_does_not_apply():
    lin = torch.nn.Linear(6, 3)
    x = torch.randn(4, 6, requires_grad=True)  # a trainable input: its gradient is needed
    project(x, lin).sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, lin.weight.detach().sum(0).expand(4, 6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert project(torch.randn(4, 6), lin).dtype == torch.bfloat16


def test_projection_without_onednn_is_plain_linear(monkeypatch):
    monkeypatch.setattr(fused_ops, "_ONEDNN", False)
    lin = torch.nn.Linear(6, 3)
    x = torch.randn(4, 6)
    assert torch.equal(project(x, lin), lin(x))


def _dense_scores(model):
    """Every layer written plainly on x = normalize([preference; features]) with the dense operator."""
    with torch.no_grad():
        return _dense_propagate(model)


def test_fixed_preference_constants_follow_in_place_changes_and_loaded_weights():
    model = build("mmgcn", embedding_dim=6)
    gcn = model.gcns["image"]
    assert not gcn.preference.requires_grad  # MMRec's fixed table: the cached path
    with torch.no_grad():
        first = model.propagate()
        assert gcn.user_input(model.blocks[1]) is gcn.user_input(model.blocks[1])  # computed once
        gcn.preference.mul_(3.0).add_(0.5)
        moved = model.propagate()
    ref = _dense_scores(model)
    assert not torch.allclose(first[0], moved[0])
    assert torch.allclose(moved[0], ref[0], atol=1e-5) and torch.allclose(moved[1], ref[1], atol=1e-5)
    other = build("mmgcn", embedding_dim=6, seed=5)
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        got, want = model.propagate(), other.propagate()
    assert torch.allclose(got[0], want[0], atol=1e-6) and torch.allclose(got[1], want[1], atol=1e-6)


@pytest.mark.parametrize("coverage", ["image", "all"])
def test_cached_preference_penalty_follows_changes(coverage):
    model = build("mmgcn", embedding_dim=6, preference_penalty=coverage)

    def expected():
        used = ["image", "text"] if coverage == "all" else ["image"]
        return sum((model.gcns[m].preference.double() ** 2).mean() for m in used)

    assert abs(float(model.preference_penalty()) - float(expected())) < 1e-6
    with torch.no_grad():
        model.gcns["image"].preference.mul_(2.0)
    assert abs(float(model.preference_penalty()) - float(expected())) < 1e-6


def test_trained_preferences_take_the_uncached_path():
    model = build("mmgcn", embedding_dim=6, train_ids=True)
    loss = model.calculate_loss(make_batch())
    loss.backward()
    for m in model.used:
        assert model.gcns[m].preference.grad is not None and model.gcns[m].preference.grad.abs().sum() > 0
    assert model.id_embedding.grad is not None


def test_autocast_casts_frozen_features_once():
    model = build("mmgcn", embedding_dim=6)
    gcn, f = model.gcns["image"], model.features.get("image")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = gcn._autocast_input(f)
        assert a.dtype == torch.bfloat16 and gcn._autocast_input(f) is a
        assert torch.equal(a, f.to(torch.bfloat16))
        with torch.no_grad():
            f.add_(1.0)
        assert torch.equal(gcn._autocast_input(f), f.to(torch.bfloat16))
        loss = model.calculate_loss(make_batch())
    assert gcn._autocast_input(f) is f  # outside autocast: the fp32 features themselves
    loss.backward()
    assert torch.isfinite(loss) and gcn.projection.weight.grad is not None


def test_in_place_steps_keep_autograd_consistent():
    """LeakyReLU and the second combine product run in place; autograd's version check would raise
    if a saved tensor were overwritten, and the loss would not match the dense reference."""
    model = build("mmgcn", embedding_dim=6)
    b = make_batch()
    users, items = _dense_propagate(model)
    u = users[b.users]
    ref = F.softplus(-((u * items[b.pos_items]).sum(1) - (u * items[b.neg_items]).sum(1))).mean()
    fast_u, fast_i = model.propagate()
    fu = fast_u[b.users]
    fast = F.softplus(-((fu * fast_i[b.pos_items]).sum(1) - (fu * fast_i[b.neg_items]).sum(1))).mean()
    fast.backward()
    assert np.isclose(float(fast.detach()), float(ref.detach()), atol=1e-6)
