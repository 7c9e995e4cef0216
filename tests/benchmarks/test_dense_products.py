"""benchmarks/dense_products.py: the dense arithmetic of training steps (bench_models.py's floor
columns), counted by hand on products whose sizes are known."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import dense_products as dp  # noqa: E402

M, K, N = 7, 5, 3


def test_a_linear_layer_forward_and_backward_is_three_products():
    x = torch.randn(M, K, requires_grad=True)
    w = torch.randn(N, K, requires_grad=True)
    b = torch.randn(N, requires_grad=True)
    with dp.DenseProducts() as p:
        F.linear(x, w, b).square().sum().backward()
    assert p.flops == 3 * 2 * M * K * N  # y = x w^T + b, dx = g w, dw = g^T x
    assert p.calls == 3 and p.seconds > 0


def test_frozen_input_needs_no_input_gradient_product():
    x = torch.randn(M, K)
    w = torch.randn(K, N, requires_grad=True)
    with dp.DenseProducts() as p:
        (x @ w).sum().backward()
    assert p.flops == 2 * 2 * M * K * N


def test_batched_and_onednn_products_are_counted():
    a, b = torch.randn(4, M, K), torch.randn(4, K, N)
    with dp.DenseProducts() as p:
        torch.bmm(a, b)
        torch.baddbmm(torch.zeros(4, M, N), a, b)
    assert p.flops == 2 * (2 * 4 * M * K * N)
    if dp._LINEAR is None or not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN linear")
    with dp.DenseProducts() as p:
        dp._LINEAR(torch.randn(2, M, K), torch.randn(N, K), None, "none", [], "")
    assert p.flops == 2 * (2 * M) * K * N


def test_sparse_products_and_elementwise_ops_are_not_dense_products():
    adjacency = torch.eye(M).to_sparse_csr()
    x = torch.randn(M, K)
    with dp.DenseProducts() as p:
        adjacency @ x
        torch.addmm(torch.zeros(M, K), adjacency, x)
        (x * x).sum()
        F.embedding_bag(torch.tensor([0, 1, 2]), x, torch.tensor([0, 2]), mode="sum")
    assert p.flops == 0 and p.calls == 0


class _Model:
    """pre_epoch_hook runs one [M, K] x [K, N] product, as LATTICE builds its graph once an epoch."""

    def train(self):
        return self

    def pre_epoch_hook(self, epoch):
        torch.randn(M, K) @ torch.randn(K, N)


class _Trainer:
    """A step is one [M, K] x [K, N] product; the epoch's first step runs a second one."""

    def __init__(self, n_train, batch_size):
        self.data = SimpleNamespace(train=range(n_train))
        self.s = SimpleNamespace(batch_size=batch_size)
        self.seen = []

    def batches(self, epoch):
        yield from range(100)

    def train_step(self, batch, epoch):
        self.seen.append(batch)
        for _ in range(2 if batch == 0 else 1):
            torch.randn(M, K) @ torch.randn(K, N)


def test_the_first_step_and_the_hook_are_counted_apart_from_the_later_steps():
    trainer = _Trainer(n_train=11, batch_size=2)  # 5.5 steps an epoch: the first, then 4.5 later ones
    counted = dp.epoch_products(trainer, _Model(), epoch=1, steps=4)
    one = 2 * M * K * N / 1e9
    assert trainer.seen == [0, 1, 2, 3]
    assert counted["steps_counted"] == 4 and counted["steps_per_epoch"] == 5.5
    assert counted["first_gflop"] == pytest.approx(3 * one)  # the hook's product and the first step's two
    assert counted["step_gflop"] == pytest.approx(one)
    floor = dp.epoch_floor(counted, peak=one * 7.5)  # (3 + 4.5) products a epoch at 7.5 products a second
    assert floor["dense_gflop_epoch"] == pytest.approx(7.5 * one)
    assert floor["floor_s_epoch"] == pytest.approx(1.0)
    assert floor["products_gflops"] > 0
    with pytest.raises(ValueError, match="at least one later"):
        dp.epoch_products(trainer, _Model(), epoch=1, steps=1)


def test_the_trainer_steps_of_a_real_model_are_counted():
    import cliper.testing.backbones as C
    from cliper.config.schema import TrainSection
    from cliper.evaluation.evaluator import Evaluator
    from cliper.training.trainer import Trainer

    data = C.data()
    got = {}
    for name in ("lightgcn", "vbpr"):
        model = C.build(name)
        trainer = Trainer(model, data, Evaluator(data), TrainSection(batch_size=64), progress=False)
        got[name] = dp.epoch_products(trainer, model, epoch=1, steps=3)
    assert got["lightgcn"]["step_gflop"] == 0  # its propagation is sparse products only
    assert got["vbpr"]["step_gflop"] > 0 and got["vbpr"]["steps_per_epoch"] == len(data.train) / 64


def test_peak_rate_is_a_positive_rate():
    assert dp.peak_gflops(n=64, reps=2) > 0


def test_the_floor_cells_of_a_bench_row_are_its_ratios():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_models.py"
    spec = importlib.util.spec_from_file_location("cliper_bench_models_floor", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    products = {"dense_gflop_epoch": 600.0, "products_s_epoch": 12.0, "products_gflops": 50.0, "peak_gflops": 60.0,
                "floor_s_epoch": 10.0, "repr_gflop": 15.0, "repr_floor_s": 0.25, "x_bare_repr_floor_cpu": 1.05}
    row = {"products": products, "reference": {"epoch_s": 35.0}}
    cells = bench.floor_cells(row)
    assert cells["ref / floor"] == 3.5 and cells["floor s/epoch"] == 10.0 and cells["products GFLOP/s"] == 50.0
    assert cells["repr floor s"] == 0.25 and cells["x bare + repr floor cpu"] == 1.05
    assert bench.floor_cells({**row, "reference": {}})["ref / floor"] is None  # no reference ran
    no_products = {**row, "products": {**products, "dense_gflop_epoch": 0.0, "floor_s_epoch": 0.0}}
    assert bench.floor_cells(no_products)["ref / floor"] is None  # an ID-only model: no floor to divide by
    assert bench.floor_cells({"reference": {"epoch_s": 1.0}}) == {}  # --floor-steps 0
