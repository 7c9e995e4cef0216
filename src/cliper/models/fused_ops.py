"""Faster kernels for two products of the multimodal backbones; same maths, fewer passes.

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
