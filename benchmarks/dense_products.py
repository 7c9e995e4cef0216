"""The dense matrix products a piece of torch code runs: their arithmetic and their time.

Why: on one core a multimodal backbone's epoch is mostly a few wide products (MMGCN's and DualGNN's
4096 -> 256 projection of every item, forward and weight gradient, at every batch). Their
floating-point operations divided by the processor's best product rate give the time no
implementation of the same computation can go below, so ``reference s/epoch / that floor`` is
the largest ``x ref`` the computation allows on this processor (``bench_models.py``'s
``ref / floor``).

:class:`DenseProducts` is a dispatch mode (``TorchDispatchMode``, what torch's own
``FlopCounterMode`` is built on): it sees every op, autograd's backward included, counts
``2 m k n`` per dense product (``mm``, ``addmm``, ``bmm``, ``baddbmm``, oneDNN's
``_linear_pointwise``: the products cliper's fp32 path runs) and times each of them (CPU ops
are synchronous). A product with a sparse operand (a CSR adjacency) is not a dense product and is
not counted; neither are sparse products run as ``embedding_bag``. Its own Python overhead falls
outside the timed products, so the step times it slows are not reported, only the products'.
"""

from __future__ import annotations

import math
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
try:  # the op cliper's fp32 path multiplies with (cliper.models.fused_ops), recognised by identity
    _LINEAR = torch.ops.mkldnn._linear_pointwise
except (AttributeError, RuntimeError):  # a torch built without oneDNN
    _LINEAR = None


def _dims(x) -> tuple[int, ...] | None:
    return tuple(x.shape) if isinstance(x, torch.Tensor) and x.layout == torch.strided else None


def _matmul_flops(a, b) -> int | None:
    """2 m k n for [.., m, k] @ [.., k, n] (batch dims of ``a`` multiply), None unless both are dense."""
    sa, sb = _dims(a), _dims(b)
    if sa is None or sb is None or len(sa) < 2 or len(sb) < 2:
        return None
    return 2 * math.prod(sa[:-1]) * sa[-1] * sb[-1]


def _linear_flops(x, w) -> int | None:
    """2 m k n for oneDNN's ``linear(x [.., k], w [n, k])``."""
    sx, sw = _dims(x), _dims(w)
    if sx is None or sw is None or len(sw) != 2:
        return None
    return 2 * math.prod(sx[:-1]) * sx[-1] * sw[0]


def product_flops(func, args) -> int | None:
    """Floating-point operations of one dense product op, or None if ``func`` is not one."""
    packet = getattr(func, "overloadpacket", None)
    if packet in (aten.mm, aten.bmm):
        return _matmul_flops(args[0], args[1])
    if packet in (aten.addmm, aten.addmm_, aten.baddbmm, aten.baddbmm_, aten._addmm_activation):
        return _matmul_flops(args[1], args[2])
    if _LINEAR is not None and packet is _LINEAR:
        return _linear_flops(args[0], args[1])
    return None


class DenseProducts(TorchDispatchMode):
    """Inside ``with DenseProducts() as p:``, ``p.flops`` and ``p.seconds`` of every dense product."""

    def __init__(self):
        super().__init__()
        self.flops, self.seconds, self.calls = 0, 0.0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flops = product_flops(func, args)
        if flops is None:
            return func(*args, **kwargs)
        t = time.perf_counter()
        out = func(*args, **kwargs)
        self.seconds += time.perf_counter() - t
        self.flops += flops
        self.calls += 1
        return out


def peak_gflops(n: int = 2048, reps: int = 5) -> float:
    """The best fp32 product rate here (GFLOP/s): an n^3 product by MKL's ``mm`` and by cliper's
    ``fused_ops.matmul_nt`` (oneDNN where it runs, else MKL again), best of ``reps`` each, at the
    current torch threads."""
    from cliper.models import fused_ops

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    kernels = [lambda: torch.mm(a, b), lambda: fused_ops.matmul_nt(a, b)]
    best = math.inf
    for kernel in kernels:
        kernel()  # first call: oneDNN builds its kernel
        for _ in range(reps):
            t = time.perf_counter()
            kernel()
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def epoch_products(trainer, model, epoch: int, steps: int) -> dict:
    """Dense products of one training epoch, from its ``pre_epoch_hook``, its first step and the
    mean of its next ``steps - 1`` steps (the trainer's own batches and ``train_step``).

    The first step is counted apart because a model may do once per epoch what later steps reuse
    (LATTICE builds its learned item graph, products and kNN searches, in the epoch's first step;
    its later steps run no dense product). Returns GFLOP and product seconds of the hook and the
    first step together, their mean over the later steps, and the epoch's step count
    (interactions / batch size, the last partial batch as its fraction). The steps train the
    model: call it after the measurements it must not change."""
    if steps < 2:
        raise ValueError(f"steps={steps}: the first step and at least one later one are counted")
    model.train()
    with DenseProducts() as first:
        model.pre_epoch_hook(epoch)
    flops, seconds = [], []
    for i, batch in enumerate(trainer.batches(epoch)):
        if i == steps:
            break
        with DenseProducts() as step:
            trainer.train_step(batch, epoch)
        if i == 0:
            first.flops, first.seconds = first.flops + step.flops, first.seconds + step.seconds
        else:
            flops.append(step.flops)
            seconds.append(step.seconds)
    n = max(len(flops), 1)
    return {"first_gflop": first.flops / 1e9, "first_products_s": first.seconds, "steps_counted": len(flops) + 1,
            "step_gflop": sum(flops) / n / 1e9, "step_products_s": sum(seconds) / n,
            "steps_per_epoch": len(trainer.data.train) / trainer.s.batch_size}


def epoch_floor(counted: dict, peak: float) -> dict:
    """Per-epoch figures of :func:`epoch_products` at ``peak`` GFLOP/s: dense GFLOP, the measured
    products' seconds and rate, and the floor (GFLOP / peak)."""
    later = max(counted["steps_per_epoch"] - 1, 0.0)
    gflop = counted["first_gflop"] + counted["step_gflop"] * later
    products = counted["first_products_s"] + counted["step_products_s"] * later
    return {"dense_gflop_epoch": gflop, "products_s_epoch": products,
            "products_gflops": gflop / products if products > 0 else None, "peak_gflops": peak,
            "floor_s_epoch": gflop / peak}
