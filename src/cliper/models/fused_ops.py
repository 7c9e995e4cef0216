"""Faster kernels for products of the multimodal backbones; same maths, fewer passes.

- :func:`feature_matmul`: ``x @ w`` for a tall feature table x [N, D] and a narrow w [D, k],
  written as ``(w.T @ x.T).T`` so that BOTH the forward product and autograd's weight gradient
  (``grad.T @ x``) run in the BLAS layout that is fast for these shapes: on Baby's
  7050 x 4096 image table with k = 4 (LGMRec's hyperedges) about 4x faster forward and 10x
  faster backward than ``x @ w`` on one CPU thread (measured, benchmarks/probe_new_models.py).
- :func:`cosine_logsumexp`: row-wise ``logsumexp(cos(a_i, c_j) / t)`` over all candidates c
  with a hand-written backward: the softmax is formed once in place and reused, no
  ``logits / t`` temporary, no max pass when ``1 / t`` is small enough that exp cannot overflow
  (cosines are bounded by 1). LGMRec's hypergraph contrastive loss ranks each batch user
  against ALL users (2048 x 19445 on Baby), which dominated its epoch.
- :func:`linear`: ``F.linear`` by oneDNN's fp32 kernel on CPU, 10-30% faster than MKL's on the
  feature projections and layer products of MMGCN and DualGNN / DRAGON.
- :func:`matmul_nt` / :func:`weight_grad`: ``a @ b.T`` and ``g.T @ x`` by oneDNN where it measured
  faster than MKL here (wide products; see :func:`weight_grad` for the rule).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w`` (x [N, D] tall, w [D, k] narrow) in the layout whose forward and weight gradient are fast."""
    return (w.T @ x.T).T


_EXP_SAFE = 40.0  # exp(2 * 40) stays far below float32's max (~3.4e38 = exp(88.7))


class _ScaledLogSumExp(torch.autograd.Function):
    """lse_i = log sum_j exp(a_i . c_j) for rows with |a_i . c_j| <= bound (a, c pre-scaled)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, c: torch.Tensor, bound: float) -> torch.Tensor:
        logits = (c @ a.T).T  # [B, N]; this layout is the faster one for B << N, small d
        if bound <= _EXP_SAFE:
            p = logits.exp_()
            total = p.sum(1)
            lse = total.log()
        else:
            shift = logits.amax(1, keepdim=True)
            p = logits.sub_(shift).exp_()
            total = p.sum(1)
            lse = total.log() + shift.squeeze(1)
        ctx.save_for_backward(a, c, p, total)
        return lse

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, c, p, total = ctx.saved_tensors
        weights = p.mul_((grad / total).unsqueeze(1))  # softmax rows times the incoming gradient
        return weights @ c, weights.T @ a, None


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def cosine_logsumexp(anchors: torch.Tensor, candidates: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per anchor row, ``logsumexp_j(cos(anchor, candidate_j) / temperature)`` ([B]).

    Equals ``torch.logsumexp(F.normalize(a) @ F.normalize(c).T / t, 1)`` with less memory
    traffic; the [B, N] matrix is kept once (as the softmax) for the backward pass.
    """
    # float32 under train.precision bf16/fp16 autocast too: exp of un-shifted logits needs the range
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        a = F.normalize(_at_least_float32(anchors), dim=1) / temperature
        c = F.normalize(_at_least_float32(candidates), dim=1)
        return _ScaledLogSumExp.apply(a, c, 1.0 / temperature)


def in_batch_info_nce(view1: torch.Tensor, view2: torch.Tensor, temperature: float) -> torch.Tensor:
    """mean_i -log softmax_j(cos(v1_i, v2_j) / t)[i], in-batch negatives (MGCN / SMORE / DRAGON-style InfoNCE).

    The positive term is the row-wise cosine, not the logits' diagonal: the plain form's
    ``diagonal()`` backward writes a zero-filled [B, B] gradient for one value per row.
    """
    positive = (F.normalize(view1, dim=1) * F.normalize(view2, dim=1)).sum(1) / temperature
    return (cosine_logsumexp(view1, view2, temperature) - positive).mean()


def _onednn_linear_works() -> bool:
    """Whether torch's oneDNN linear kernel (``torch.ops.mkldnn._linear_pointwise``) runs here."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        x, w, b = torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4)
        return torch.equal(torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""), torch.full((2, 4), 3.0))
    except (AttributeError, RuntimeError):
        return False


_ONEDNN: bool | None = None  # probed on first use


def _onednn_for(*tensors: torch.Tensor) -> bool:
    """Whether oneDNN's fp32 kernel takes a product of these: CPU fp32 2-D tensors, outside autocast."""
    global _ONEDNN
    if torch.is_autocast_enabled("cpu") or any(
            t.device.type != "cpu" or t.dtype != torch.float32 or t.dim() != 2 for t in tensors):
        return False
    if _ONEDNN is None:
        _ONEDNN = _onednn_linear_works()
    return _ONEDNN


def _onednn_nt(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


def matmul_nt(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b.T (+ bias)`` without autograd (for hand-written backwards); ``b`` may be a
    transposed view. By oneDNN on CPU in fp32 outside autocast: at one thread on the project's
    AMD EPYC machines it ran VBPR's [2870 x 4096] x [4096 x 64] batch projection at ~100 GFLOP/s
    against MKL's ~70, SLMRec's [3370 x 4096] one in 17 ms against 30, and the [2048 x 2048] x
    [2048 x 64] InfoNCE gradient 30% faster (benchmarks/probe_gemm_floor.py)."""
    if _onednn_for(a, b):
        return _onednn_nt(a, b, bias)
    out = a @ b.T
    return out if bias is None else out.add_(bias)


# oneDNN builds and caches a kernel per product shape (~0.45 MB each, up to 1024 of them): a row count that
# changes every batch (a batch's distinct items) grew the process by 1-6 MB per batch. Callers round such
# row counts up to a multiple of ROW_STEP (zero rows), so a few dozen shapes recur.
ROW_STEP = 64


def round_rows(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`ROW_STEP`."""
    return -(-int(n) // ROW_STEP) * ROW_STEP


WIDE_INPUT = 1024  # weight_grad: oneDNN from this input width on


def weight_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``grad.T @ x``, the weight gradient of ``x W^T``, by oneDNN for wide inputs (``x`` with
    :data:`WIDE_INPUT` columns or more) on CPU in fp32: 15-27% faster than MKL's for the 4096-d
    image tables (MMGCN's [7050 x 256]^T x [7050 x 4096] 153 vs 180 ms, VBPR's batch 18 vs 21 ms)
    and slower for narrow ones (384-d: 17.5 vs 15.4 ms at 256 outputs), so those stay MKL's."""
    if x.shape[1] >= WIDE_INPUT and _onednn_for(grad, x):
        return _onednn_nt(grad.T.contiguous(), x.T)
    return grad.T @ x


class _OneDnnLinear(torch.autograd.Function):
    """``x W^T + b`` by oneDNN's fp32 kernel: forward and input gradient by oneDNN, the weight
    gradient by :func:`weight_grad`.

    At one thread on the project's AMD EPYC machines, MKL's fp32 GEMM ran MMGCN's (and DualGNN's)
    [7050 x 4096] x [4096 x 256] feature projection in 165-185 ms, oneDNN's in 140 ms, and the
    mid-sized products of MMGCN's layers ([7050 x 384] x [384 x 384], [19445 x 256] x [256 x 64],
    their input gradients, ...) 10-30% faster; only tall 64 x 64 products were even (same fp32
    maths, another blocking, so values differ by float rounding; benchmarks/probe_gemm_floor.py).
    ``torch.ops.mkldnn._linear_pointwise`` is a private torch op: it is probed once
    (:func:`_onednn_linear_works`) and every caller falls back to ``F.linear`` without it.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_nt(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad
        return (matmul_nt(grad, weight.T) if need_x else None, weight_grad(grad, x) if need_w else None,
                grad.sum(0) if need_b and ctx.has_bias else None)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, by oneDNN (:class:`_OneDnnLinear`) for 2-D contiguous fp32
    CPU tensors outside autocast, else ``F.linear`` itself."""
    if (not x.is_contiguous() or not weight.is_contiguous()
            or (bias is not None and bias.dtype != torch.float32) or not _onednn_for(x, weight)):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _OneDnnLinear.apply(x, weight, bias)
    return _onednn_nt(x, weight, bias)


def onednn_unavailable() -> bool:
    """True once the probe found no usable oneDNN linear kernel (False before it ran)."""
    return _ONEDNN is False
