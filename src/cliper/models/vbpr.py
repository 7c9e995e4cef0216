"""VBPR: He & McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback", AAAI 2016.

Section 3 (Eq. 2-3): the preference of user u for item i is
``gamma_u . gamma_i + theta_u . (E f_i)``, i.e. the dot product of the user vector
``[gamma_u ; theta_u]`` with the item vector ``[gamma_i ; E f_i]``: an ID embedding
next to a linear projection E of the item's content features f_i. Trained with BPR
(Section 3.2) and L2 regularisation of the embeddings in the batch. As in MMRec, the
content feature is text and image concatenated ``[t_i ; v_i]`` when both are given,
else the one available modality; the bias terms of Eq. 2 are dropped (as MMRec does).

Differences from MMRec's VBPR (table on docs/backbones/vbpr.md): none in behaviour at the defaults
(L2 ``reg_form: norm`` = its EmbLoss on [gamma; theta] and [gamma_i; E f_i + b], same init, its
grid); only the batch's distinct items are projected (same values and gradients), gathered into
buffers kept between batches (:class:`_GatherProject`), by oneDNN's fp32 products on CPU
(fused_ops.matmul_nt / weight_grad: values differ from MKL's by float rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveInt
from torch import nn

from cliper.models.base import Batch, ModelContext, ModelParams, Recommender, RegForm
from cliper.models.fused_ops import matmul_nt, round_rows, weight_grad
from cliper.models.layers import CastCopy, KeptRows, bpr_loss, l2_penalty, pair_rows_loss
from cliper.models.registry import register


class VBPRParams(ModelParams):
    reg_form: RegForm = "norm"  # the reference code's L2 form (layers.l2_penalty)
    embedding_dim: PositiveInt = 64  # size of gamma_i and of E f_i (the user vector is twice this)
    reg_weight: NonNegativeFloat = 1e-4  # L2 on the batch's user/item vectors (MMRec grid 2.0 ... 1e-5)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # dropout on user/item vectors during training (MMRec's forward, 0 by default)


class _GatherProject(torch.autograd.Function):
    """``bias + sum_m X_m[rows] W_m^T`` for fixed feature tables X_m, W_m the matching column
    blocks of W: ``projection(content(rows))`` without the concatenation.

    The gathered rows go into buffers the model keeps between batches (a fresh ~50 MB block
    each batch was page-faulted in again every time); saving them for backward makes autograd
    refuse, with its in-place error, a backward after a later gather overwrote them. The weight
    gradient is written block by block into one tensor (no zero-filled slice gradients to sum).
    Under bf16 autocast the rows come from bf16 copies of the tables: the same values as
    casting the gathered fp32 rows, with half the bytes moved.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, owner: "VBPR") -> torch.Tensor:  # type: ignore[override]
        low = torch.get_autocast_dtype(rows.device.type) if torch.is_autocast_enabled(rows.device.type) else None
        blocks = owner._gather(rows, low)  # zero rows past len(rows), up to fused_ops.round_rows
        out, start = bias, 0
        with torch.autocast(rows.device.type, enabled=False):
            for i, block in enumerate(blocks):
                w = weight[:, start : start + block.shape[1]]
                if low is None:  # fp32: oneDNN's kernel where it is faster (fused_ops.matmul_nt)
                    part = matmul_nt(block, w.contiguous(), bias if i == 0 else None)
                    out = part if i == 0 else out.add_(part)
                else:
                    out = out + block @ w.to(low).T
                start += block.shape[1]
        ctx.save_for_backward(*blocks)
        ctx.weight_shape = weight.shape
        return out[: rows.shape[0]]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        blocks = ctx.saved_tensors
        if blocks[0].shape[0] > grad.shape[0]:  # the padding rows are zero: any gradient there adds nothing
            grad = torch.cat([grad, grad.new_zeros(blocks[0].shape[0] - grad.shape[0], grad.shape[1])])
        grad_w = grad.new_empty(ctx.weight_shape)
        start = 0
        for block in blocks:
            view = grad_w[:, start : start + block.shape[1]]
            if block.dtype == grad.dtype:
                view.copy_(weight_grad(grad, block))
            else:
                view.copy_(grad.to(block.dtype).T @ block)
            start += block.shape[1]
        return None, grad_w, grad.sum(0), None


@register
class VBPR(Recommender):
    name = "vbpr"
    Params = VBPRParams
    modalities = ("image", "text")
    min_modalities = 1
    gather_project = True  # _GatherProject in training (False: the autograd path; benchmarks A/B it)
    pair_loss = True  # layers.pair_rows_loss without dropout (False: the autograd expression; A/B)

    def __init__(self, ctx: ModelContext, params: VBPRParams):
        super().__init__(ctx, params)
        self.used = [m for m in ("text", "image") if self.features.has(m)]  # MMRec order: [text ; image]
        in_dim = sum(self.features.dim(m) for m in self.used)
        d = params.embedding_dim
        self.user_embedding = nn.Embedding(self.n_users, 2 * d)  # [gamma_u ; theta_u]
        self.item_embedding = nn.Embedding(self.n_items, d)  # gamma_i
        self.projection = nn.Linear(in_dim, d)  # E (with a bias, as in MMRec)
        self._rows_buffers = KeptRows()  # _GatherProject's gathered rows, kept between batches
        self._low_tables = {m: CastCopy() for m in self.used}  # the tables in autocast's dtype
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        nn.init.xavier_normal_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)

    def content(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[n, d_text + d_image] content features of ``items`` (all when None)."""
        feats = [self.features.get(m) for m in self.used]
        if items is not None:
            feats = [f.index_select(0, items) for f in feats]
        return feats[0] if len(feats) == 1 else torch.cat(feats, 1)

    def project(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """E f_i for ``items`` (all when None).

        Equal to ``projection(content(items))``, computed per modality with the matching
        column block of E so the wide features are never concatenated. Fused text is
        recomputed on every call so a trainable fusion gets gradients.
        """
        if items is not None and self.gather_project and not self.features.trainable and torch.is_grad_enabled():
            return _GatherProject.apply(items, self.projection.weight, self.projection.bias, self)
        out = self.projection.bias
        start = 0
        for m in self.used:
            f = self.features.get(m)
            if items is not None:
                f = f.index_select(0, items)
            width = f.shape[1]
            out = out + F.linear(f, self.projection.weight[:, start : start + width])
            start += width
        return out

    def _gather(self, rows: torch.Tensor, dtype: torch.dtype | None) -> list[torch.Tensor]:
        """Rows of each (fixed) table, in ``dtype`` when given, written into the kept buffers, then
        zero rows up to ``fused_ops.round_rows(len(rows))``: the products' shapes recur across
        batches, so oneDNN does not build and keep a kernel for every batch's distinct-item count."""
        n, out = rows.shape[0], []
        padded = round_rows(n)
        for m in self.used:
            table = self.features.get(m)
            if dtype is not None and dtype != table.dtype:
                table = self._low_tables[m].get(table, dtype)
            buf = self._rows_buffers.get(m, padded, table, round_rows(self.n_items))
            torch.index_select(table, 0, rows, out=buf[:n])
            buf[n:].zero_()
            out.append(buf)
        return out

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[gamma_i ; E f_i] for ``items`` (all items when None); each distinct item is projected once."""
        if items is None:
            return torch.cat([self.item_embedding.weight, self.project()], 1)
        rows, where = self._distinct_vectors(items)
        return rows[where]

    def _distinct_vectors(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([gamma_i ; E f_i] of the distinct ``items``, each item's row among them)."""
        uniq, where = torch.unique(items, return_inverse=True)
        return torch.cat([self.item_embedding(uniq), self.project(uniq)], 1), where

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        p_drop = self.params.dropout if self.training else 0.0
        if p_drop == 0.0 and self.pair_loss:  # the loss and penalty from the distinct items' rows in one node
            rows, where = self._distinct_vectors(torch.cat([batch.pos_items, batch.neg_items]))
            return pair_rows_loss(self.user_embedding.weight, rows, batch.users, where,
                                  self.params.reg_form, self.params.reg_weight)
        n = batch.pos_items.shape[0]
        items = self.item_vectors(torch.cat([batch.pos_items, batch.neg_items]))
        u = nn.functional.dropout(self.user_embedding(batch.users), p_drop, self.training)
        items = nn.functional.dropout(items, p_drop, self.training)
        p, q = items[:n], items[n:]
        loss = bpr_loss((u * p).sum(1), (u * q).sum(1))
        return loss + self.params.reg_weight * l2_penalty(self.params.reg_form, u, p, q)

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._rows_buffers.clear()  # training's gathered rows are not needed to score (lower eval peak)
        return self.user_embedding.weight, self.cached(self.item_vectors)
