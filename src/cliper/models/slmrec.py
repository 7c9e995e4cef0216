"""SLMRec: Tao et al., "Self-supervised Learning for Multimedia Recommendation", IEEE
Transactions on Multimedia 2022 (doi 10.1109/TMM.2022.3187556).

- Backbone (Sec. III-A): each modality's features are L2-normalised and projected to
  the embedding size; the item ID embeddings and each projected modality are propagated
  with LightGCN (``n_layers``, mean of layers) on the user-item graph, the user side being
  the shared user ID embedding. The branches are fused (``mm_fusion_mode`` concat or
  mean) and mapped by a linear read-out for users and items.
- Main task: in-batch sampled softmax (InfoNCE) between normalised user and positive-item
  representations with temperature ``temp`` (as MMRec; negatives are the other items of
  the batch, the sampled negatives are ignored).
- Self-supervised tasks (Sec. III-B, ``ssl_task``), weighted by ``ssl_alpha`` with
  temperature ``ssl_temp``:
  * ``FD`` feature dropout (Sec. III-B1): two views with dropout after each propagation
    layer; InfoNCE between the views of the batch's users and of its items.
  * ``FM`` feature masking (Sec. III-B2): each view drops one whole branch (ID or a
    modality, two different ones drawn from the torch RNG); same InfoNCE. ``FD+FM`` does both.
  * ``FAC`` fine and coarse (Sec. III-B3): the ID branch is aligned with the first
    modality in a d-dimensional space, then the joint ID+first-modality representation
    with the next modality in a d/2-dimensional space (d/4 for a third), InfoNCE at each
    level. As MMRec, every level after the first maps the joint representation through
    two linear maps (to its own size, then to the level's; the first is MMRec's leftover
    audio level): the same function class as one map, but MMRec's parametrisation and init.

With odd ``n_layers`` and fixed features, training and scoring use the split form of the
propagation (``_fast``; docs/backbones/slmrec.md): the smoothed features T_i norm(X) are computed
once, a batch projects only its own rows, and the user term is shared by all branches; the batch's
distinct users and items are read out once each and the in-batch InfoNCE runs over them with their
counts as weights (``_counted_info_nce``: the same sums, a [distinct, distinct] buffer). Otherwise
each branch is propagated on its own, only the batch's rows are fused and read out, and the
InfoNCE is one autograd node with one [B, B] buffer (``_InfoNCE``). Same values and
gradients as the plain forms up to float rounding (the distinct-row form raises shifted logits
below -60 to -60 before exp: 1e-26 of a row's largest term, below float32 rounding of its sum).
Defaults follow MMRec's SLMRec.yaml (recdim 64, 3 layers, FAC, temp 0.2, dropout 0.3; ssl_alpha /
ssl_temp / learning rate searched). MMRec applies Adam weight decay 1e-4 instead of an embedding
penalty: the per-model config sets ``train.weight_decay``; ``reg_weight`` (default 0) adds an L2 on the batch's ID embeddings.

Differences from the reference code (MMRec's slmrec.py; docs/backbones/slmrec.md has the table):
- scoring recomputes the representations from the current weights; MMRec reuses those of the
  last training batch, one optimiser step old (the scored pass has no dropout), and applies a
  sigmoid to the scores (monotone: same ranking).
  Kept: scores then depend on the saved weights alone; the stale variant moved R@20 / N@20 by
  about 1% either way in seeded runs (docs/backbones/mmgcn.md, "Scoring with the last training batch").
- FD / FM / FD+FM run over the branches present; MMRec's versions index an audio branch that
  does not exist and fail, so only FAC (its default) is comparable.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from cliper.graphs.adjacency import SparseGraph, bipartite_graph, layer_sum, normalized_bipartite, sparse_mm
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender
from cliper.models.fused_ops import linear as fused_linear
from cliper.models.fused_ops import ROW_STEP, matmul_nt, round_rows
from cliper.models.layers import KeptRows, l2_penalty
from cliper.models.modal import modal_features, present_modalities
from cliper.models.registry import register


class SLMRecParams(ModelParams):
    embedding_dim: PositiveInt = 64  # MMRec recdim
    n_layers: int = Field(3, ge=0)  # LightGCN layers (layer_num)
    temp: float = Field(0.2, gt=0)  # temperature of the main in-batch softmax
    ssl_task: Literal["FAC", "FD", "FM", "FD+FM"] = "FAC"  # self-supervised task
    ssl_alpha: float = Field(0.1, ge=0.0)  # weight of the SSL loss (MMRec grid 0.01..1.0)
    ssl_temp: float = Field(0.1, gt=0)  # temperature of the SSL softmax (grid 0.1..1.0)
    dropout_rate: float = Field(0.3, ge=0.0, lt=1.0)  # feature dropout of FD / FD+FM
    mm_fusion_mode: Literal["concat", "mean"] = "concat"  # how branches are fused before the read-out
    reg_weight: float = Field(0.0, ge=0.0)  # L2 on batch ID embeddings (MMRec: Adam weight decay instead)


def _info_nce(a: torch.Tensor, b: torch.Tensor, temp: float) -> torch.Tensor:
    """mean_i [log sum_j exp(a_i . b_j / t) - a_i . b_i / t] (cross-entropy of the in-batch logits)."""
    if not torch.is_grad_enabled():
        return F.cross_entropy(a @ b.T / temp, torch.arange(a.shape[0], device=a.device))
    return _InfoNCE.apply(a, b, temp)


class _InfoNCE(torch.autograd.Function):
    """The in-batch InfoNCE with one [B, B] buffer: the logits are turned into exp(logits - max)
    in place and the backward scales that buffer into the logits' gradient, instead of
    cross_entropy's five [B, B] temporaries (the three per batch were SLMRec's largest cost).
    Same values as ``cross_entropy(a @ b.T / t)`` up to float rounding. Under autocast the
    three products run in its dtype and the softmax in fp32, as autocast runs the plain form."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, temp: float) -> torch.Tensor:  # type: ignore[override]
        dev = a.device.type
        low = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        with torch.autocast(dev, enabled=False):
            if low is None:
                a_t, b_m = a / temp, b
            else:
                a_t, b_m = (a.float() / temp).to(low), b.to(low)
            logits = (a_t @ b_m.T).float() if low is not None else matmul_nt(a_t, b_m)
            diag = logits.diagonal().clone()
            top = logits.amax(1, keepdim=True)
            expd = logits.sub_(top).exp_()
            total = expd.sum(1, keepdim=True)
        ctx.save_for_backward(a_t, b_m, expd, total)
        ctx.temp, ctx.used, ctx.dtypes = temp, False, (a.dtype, b.dtype)
        return (top.squeeze(1) + total.log().squeeze(1) - diag).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        if ctx.used:  # the buffer was consumed by the first backward
            raise RuntimeError("SLMRec's InfoNCE cannot be backpropagated twice (retain_graph)")
        ctx.used = True
        a_t, b_m, expd, total = ctx.saved_tensors
        scale = grad.to(expd.dtype) / expd.shape[0]
        d = expd.mul_(scale / total)  # d loss / d logits = (softmax - I) / B
        d.diagonal().sub_(scale)
        d = d.to(a_t.dtype)
        grad_a = matmul_nt(d, b_m.T).to(expd.dtype).div_(ctx.temp)  # oneDNN's faster here (fused_ops)
        grad_b = matmul_nt(a_t.T.contiguous(), d.T).T  # (a_t^T d)^T = d^T a_t, oneDNN's layout
        return grad_a.to(ctx.dtypes[0]), grad_b.to(ctx.dtypes[1]), None


_EXP_SAFE = 40.0  # exp(+-40) is far inside float32's range: no max shift needed below this logit bound
# shifted logits are clamped here before exp: torch's exp takes a slow path (~8x) below about -88,
# where float32 underflows, and FAC's unnormalised logits spread that far as training goes on; exp(-60)
# is 1e-26 of the row's largest term (exp(0)), far below float32 rounding of the row sum
_EXP_FLOOR = -60.0


def _pad_rows(x: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` with copies of its first row, of count 0, up to ``fused_ops.round_rows`` rows: a copy leaves
    every row max as it was and a count of 0 adds exactly nothing to the sums and gradients."""
    extra = round_rows(x.shape[0]) - x.shape[0]
    if extra == 0:
        return x, count
    return torch.cat([x, x[:1].detach().expand(extra, -1)]), torch.cat([count, count.new_zeros(extra)])


def _counted_info_nce(a: torch.Tensor, b: torch.Tensor, temp: float, a_count: torch.Tensor, b_count: torch.Tensor,
                      pairs: tuple[torch.Tensor, torch.Tensor] | None, n: int,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`_info_nce` of n pairs given on their distinct rows: row p of ``a`` stands for ``a_count[p]``
    rows of the batch, row k of ``b`` for ``b_count[k]`` columns; ``pairs`` maps the batch's pairs to
    (a row, b row), None when pair k is (k, k) (``a_count`` times). A duplicated column adds the same
    exp term again, so sum_j exp(.) = sum_k c_k exp(.): the same loss and gradients, with a
    [distinct, distinct] buffer (Baby: ~1900 x ~1460 users x items, ~1460^2 for FAC, of 2048^2).
    ``out``: a flat buffer of at least len(a) * len(b) floats to hold it (kept between batches)."""
    a32, b32 = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (a, b))  # bf16 autocast: sum in fp32
    if pairs is None:
        pos = (a_count.unsqueeze(1) * a32 * b32).sum()
    else:
        pos = (a32.index_select(0, pairs[0]) * b32.index_select(0, pairs[1])).sum()
    (a_pad, a_w), (b_pad, b_w) = _pad_rows(a, a_count), _pad_rows(b, b_count)
    lse = _CountedLogSumExp.apply(a_pad, b_pad, temp, a_w, b_w, out)
    return (lse - pos / temp) / n


_CHUNK = 1 << 18  # floats of logits per forward chunk (1 MiB: stays in cache through shift, exp and sum)


class _CountedLogSumExp(torch.autograd.Function):
    """sum_p w_p log sum_k c_k exp(a_p . b_k / t) with one [P, K] buffer.

    The logits are formed in row chunks of about 1 MiB, shifted (by the row max, only when the
    Cauchy-Schwarz bound max|a| max|b| / t could overflow: the main loss's unit vectors never need
    it), exponentiated into the buffer and summed against the counts while in cache; the backward
    folds the row and column scalings into the small [P, d] / [K, d] operands, so no pass over the
    buffer is left but the two products. A buffer kept between batches (``out``) is reused (no fresh
    ~10 MB block per term and batch). Always fp32 (float64 inputs stay float64), also under bf16
    autocast: with the buffer this small oneDNN's fp32 products beat the bf16 path and its casts (a
    short Baby run under ``train.precision: bf16``: 150 against 177 ms per batch), and the softmax is
    fp32 in either form."""

    @staticmethod
    def forward(ctx, a, b, temp, a_count, b_count, out):  # type: ignore[override]
        dev = a.device.type
        ctx.dtypes = (a.dtype, b.dtype)
        with torch.autocast(dev, enabled=False):
            work = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
            a_t, b_m = a.to(work) / temp, b.to(work)
            n_a, n_b = a_t.shape[0], b_m.shape[0]
            bound = float(a_t.norm(dim=1).max()) * float(b_m.norm(dim=1).max())
            shifted = bound > _EXP_SAFE
            if out is None or out.dtype != work or out.numel() < n_a * n_b:
                out = a_t.new_empty(n_a * n_b, dtype=work)
            expd = out[: n_a * n_b].view(n_a, n_b)
            total = expd.new_empty(n_a)
            shift = expd.new_zeros(n_a, 1) if shifted else None
            counts = b_count.to(expd.dtype)
            step = max(ROW_STEP, _CHUNK // max(n_b, 1) // ROW_STEP * ROW_STEP)  # shapes recur
            for r in range(0, n_a, step):
                rows = slice(r, min(r + step, n_a))
                logits = matmul_nt(a_t[rows], b_m)
                if shifted:
                    torch.amax(logits, 1, keepdim=True, out=shift[rows])
                    logits.sub_(shift[rows]).clamp_(min=_EXP_FLOOR)
                torch.exp(logits, out=expd[rows])
                torch.mv(expd[rows], counts, out=total[rows])
            lse = total.log()
            if shifted:
                lse += shift.squeeze(1)
            loss = (a_count.to(lse.dtype) * lse).sum()
        ctx.save_for_backward(a_t, b_m, expd, total, a_count, b_count)
        ctx.temp, ctx.used = temp, False
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        if ctx.used:  # the buffer may be another batch's by now
            raise RuntimeError("SLMRec's InfoNCE cannot be backpropagated twice (retain_graph)")
        ctx.used = True
        a_t, b_m, expd, total, a_count, b_count = ctx.saved_tensors
        # d loss / d logits[p, k] = w_p c_k exp[p, k] / total_p: row factor on a, column factor on b
        with torch.autocast(a_t.device.type, enabled=False):
            row = (grad.to(total.dtype) * a_count.to(total.dtype) / total).unsqueeze(1)
            col = b_count.to(total.dtype).unsqueeze(1)
            grad_a = matmul_nt(expd, (b_m * col).T).mul_(row).div_(ctx.temp)
            grad_b = matmul_nt((a_t * row).T.contiguous(), expd.T).T.mul_(col)
        return grad_a.to(ctx.dtypes[0]), grad_b.to(ctx.dtypes[1]), None, None, None, None


@register
class SLMRec(Recommender):
    name = "slmrec"
    Params = SLMRecParams
    modalities = ("image", "text")
    min_modalities = 1
    split_propagation = True  # _fast's split form where it applies (False: the plain form; benchmarks A/B it)

    def __init__(self, ctx: ModelContext, params: SLMRecParams):
        super().__init__(ctx, params)
        p = params
        d = p.embedding_dim
        self.modal = present_modalities(ctx.features, self.modalities)
        self.n_branches = 1 + len(self.modal)
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d)
        self.dense = nn.ModuleDict({m: nn.Linear(ctx.features.dim(m), d) for m in self.modal})
        fused = d * self.n_branches if p.mm_fusion_mode == "concat" else d
        self.read_user = nn.Linear(fused, d)
        self.read_item = nn.Linear(fused, d)
        if p.ssl_task == "FAC":
            # level j aligns the joint representation with modality j in a d / 2^j space
            dims = [max(1, d // (2**j)) for j in range(len(self.modal))]
            levels: list[nn.Module] = [nn.Linear(d, d)]
            for j in range(1, len(self.modal)):  # MMRec: two maps per later level (g_iv_iva, g_iva_ivat)
                levels.append(nn.Sequential(nn.Linear(dims[j - 1], dims[j - 1]), nn.Linear(dims[j - 1], dims[j])))
            self.fac_joint = nn.ModuleList(levels)
            self.fac_modal = nn.ModuleList([nn.Linear(d, dims[j]) for j in range(len(self.modal))])
        self.graph = bipartite_graph(ctx.train.matrix).to(ctx.device)
        self._normed: dict[str, torch.Tensor] = {}
        # the user-item block R of the normalised adjacency, for the split propagation (_fast)
        r = sp.csr_matrix(normalized_bipartite(ctx.train.matrix)[: self.n_users, self.n_users :])
        self._r_rows, self._rt_rows = r, sp.csr_matrix(r.T)
        # the split form's products are 64 columns wide (the ID tables, the selectors) or run once
        # (the smoothed features): embedding_bag's kernel, 2-3x MKL's CSR product there (adjacency.bag_mm)
        self._r = SparseGraph(r, kernel="bag").to(ctx.device)  # R and R^T
        self._rt = SparseGraph(self._rt_rows, kernel="bag").to(ctx.device)  # R^T and R
        self._smooth: dict[str, torch.Tensor] = {}
        self._rows_buffers = KeptRows()  # _rows_of's kept results
        self.reset_parameters()

    def reset_parameters(self) -> None:
        own = [self.user_embedding, self.item_embedding, self.read_user, self.read_item, *self.dense.values()]
        if self.params.ssl_task == "FAC":
            own += [m for m in self.fac_joint.modules() if isinstance(m, nn.Linear)] + [*self.fac_modal]
        for module in own:  # not self.modules(): the feature fusion keeps its own initialisation
            nn.init.xavier_uniform_(module.weight)

    # -- encoders -------------------------------------------------------------------------
    def _item_inputs(self) -> list[torch.Tensor]:
        """[ID embeddings, dense(normalised features) per modality], each [n_items, d]."""
        out = [self.item_embedding.weight]
        for m in self.modal:
            if self.features.trainable:
                x = F.normalize(modal_features(self.features, None, m), dim=1)
            else:  # fixed features: normalise once
                if m not in self._normed or self._normed[m].device != self.user_embedding.weight.device:
                    self._normed[m] = F.normalize(self.features.get(m).detach(), dim=1)
                x = self._normed[m]
            out.append(self.dense[m](x))
        return out

    def _propagate_nodes(self, item_inputs: list[torch.Tensor], dropout: float = 0.0) -> torch.Tensor:
        """LightGCN of every branch at once: [n_users + n_items, B, d] (B = branches)."""
        b, d = len(item_inputs), self.params.embedding_dim
        users = self.user_embedding.weight.repeat(1, b)
        ego = torch.cat([users, torch.cat(item_inputs, 1)], 0)
        if dropout == 0:  # one autograd node for all layers, same values (adjacency.layer_sum)
            return layer_sum(self.graph, ego, self.params.n_layers, mean=True).view(-1, b, d)
        total, layer = ego, ego
        for _ in range(self.params.n_layers):
            layer = F.dropout(self.graph @ layer, dropout, training=True)
            total = total + layer
        return (total / (self.params.n_layers + 1)).view(-1, b, d)

    def _batch_rows(self, item_inputs: list[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
        """Rows ``index`` of :meth:`_propagate_nodes` (no dropout): [len(index), B, d].

        Each branch is propagated as its own [n, d] matrix (B products of width d are about
        a quarter faster than one of width B d: the operand stays in cache) and gathered by
        one index_select (backward: one scatter, in a fixed order, so runs repeat bit for bit).
        """
        users = self.user_embedding.weight
        return torch.stack([layer_sum(self.graph, torch.cat([users, x], 0), self.params.n_layers, mean=True)
                            .index_select(0, index) for x in item_inputs], 1)

    def _propagate(self, item_inputs: list[torch.Tensor], dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """LightGCN of every branch at once: [n_users, B, d], [n_items, B, d] (B = branches)."""
        out = self._propagate_nodes(item_inputs, dropout)
        return out[: self.n_users], out[self.n_users :]

    # -- split propagation (odd n_layers, fixed features) ------------------------------------
    # With A = [[0, R], [R^T, 0]] and L odd, the LightGCN layer sum of [U; Y] is
    # [T_u U + R T_i Y ; R^T T_u U + T_i Y], T_u = sum_j (R R^T)^j, T_i = sum_j (R^T R)^j (j <= (L-1)/2).
    # It is linear in Y, and Y = norm(X) W^T + b for a modality, so T_i norm(X) is a constant
    # computed once: a batch then projects only its own rows instead of all N items, and the
    # user term T_u U is shared by all branches (2 sparse products per batch instead of 3 (1 + M)).
    def _fast(self) -> bool:
        return self.split_propagation and self.params.n_layers % 2 == 1 and not self.features.trainable

    def _series(self, x: torch.Tensor, first, second) -> torch.Tensor:
        """sum_j (second first)^j x for j <= (L-1)/2 (autograd through the sparse products)."""
        total, layer = x, x
        for _ in range((self.params.n_layers - 1) // 2):
            layer = second @ (first @ layer)
            total = total + layer
        return total

    def _smooth_item(self, x: torch.Tensor) -> torch.Tensor:
        """T_i x = sum_j (R^T R)^j x."""
        return self._series(x, self._r, self._rt)

    def _smooth_user(self, x: torch.Tensor) -> torch.Tensor:
        """T_u x = sum_j (R R^T)^j x."""
        return self._series(x, self._rt, self._r)

    def _smoothed(self) -> dict[str, torch.Tensor]:
        """T_i norm(X_m) per modality and T_i 1 ("ones"), computed once per device in column
        chunks (no [n_users, 4096] temporary); they take the place of the normalised features."""
        dev = self.user_embedding.weight.device
        if self._smooth and self._smooth["ones"].device == dev:
            return self._smooth
        self._smooth.clear()
        with torch.no_grad():
            for m in self.modal:
                x = F.normalize(self.features.get(m).detach().to(dev), dim=1)
                for c in range(0, x.shape[1], 256):
                    x[:, c : c + 256] = self._smooth_item(x[:, c : c + 256].contiguous())
                self._smooth[m] = x
            self._smooth["ones"] = self._smooth_item(torch.ones(self.n_items, 1, device=dev))
        return self._smooth

    def _selectors(self, users: torch.Tensor, items: torch.Tensor) -> tuple[SparseGraph, SparseGraph]:
        """[R[users]; I[items]] (over items) and [I[users]; R^T[items]] (over users) as sparse matrices."""
        u, i = users.cpu().numpy(), items.cpu().numpy()

        def eye_rows(rows: np.ndarray, n: int) -> sp.csr_matrix:
            return sp.csr_matrix((np.ones(len(rows), np.float32), rows, np.arange(len(rows) + 1)), shape=(len(rows), n))

        over_items = sp.vstack([self._r_rows[u], eye_rows(i, self.n_items)], format="csr")
        over_users = sp.vstack([eye_rows(u, self.n_users), self._rt_rows[i]], format="csr")
        dev = self.user_embedding.weight.device
        return SparseGraph(over_items, kernel="bag").to(dev), SparseGraph(over_users, kernel="bag").to(dev)

    def _rows_of(self, over_items: SparseGraph, table: torch.Tensor, key: str) -> torch.Tensor:
        """``over_items @ table`` written into a buffer kept between batches (layers.KeptRows: the
        ~55 MB result would otherwise be page-faulted in afresh every batch), with zero rows up to
        a multiple of ``fused_ops.ROW_STEP`` (the projection's shape then repeats across batches)."""
        n = over_items.shape[0]
        out = self._rows_buffers.get(key, round_rows(n), table, round_rows(self.n_users + self.n_items))
        torch.addmm(out[:n], over_items.matrix, table, beta=0, out=out[:n])
        out[n:].zero_()
        return out

    def _modal_rows(self, m: str, smoothed: torch.Tensor, ones: torch.Tensor) -> torch.Tensor:
        """T_i (norm(X_m) W^T + b) at the rows ``smoothed`` / ``ones`` were taken at."""
        dense = self.dense[m]
        # oneDNN's fp32 product; ``smoothed`` may carry padding rows past those of ``ones``
        return fused_linear(smoothed, dense.weight)[: ones.shape[0]] + ones * dense.bias

    def _fast_rows(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Branch outputs at [users; items] (distinct ids, no dropout): [len(users) + len(items), B, d],
        equal to those rows of :meth:`_propagate_nodes` up to float rounding."""
        over_items, over_users = self._selectors(users, items)
        smooth = self._smoothed()
        common = over_users @ self._smooth_user(self.user_embedding.weight)
        branches = [common + over_items @ self._smooth_item(self.item_embedding.weight)]
        ones = sparse_mm(over_items.matrix, smooth["ones"])
        for m in self.modal:
            branches.append(common + self._modal_rows(m, self._rows_of(over_items, smooth[m], m), ones))
        return torch.stack(branches, 1) / (self.params.n_layers + 1)

    def _fast_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_propagate` for every node through the split form."""
        smooth = self._smoothed()
        t_u = self._smooth_user(self.user_embedding.weight)
        at_items = self._rt @ t_u
        item_in = [self._smooth_item(self.item_embedding.weight)]
        item_in += [self._modal_rows(m, smooth[m], smooth["ones"]) for m in self.modal]
        users = torch.stack([t_u + self._r @ y for y in item_in], 1)
        items = torch.stack([at_items + y for y in item_in], 1)
        scale = self.params.n_layers + 1
        return users / scale, items / scale

    def _fuse(self, branches: torch.Tensor, readout: nn.Linear) -> torch.Tensor:
        if self.params.mm_fusion_mode == "concat":
            return readout(branches.reshape(branches.shape[0], -1))
        return readout(branches.mean(1))

    def compute(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user representations, item representations, per-branch item outputs)."""
        u_br, i_br = self._fast_all() if self._fast() else self._propagate(self._item_inputs())
        return self._fuse(u_br, self.read_user), self._fuse(i_br, self.read_item), i_br

    # -- losses ---------------------------------------------------------------------------
    def _nce_buffer(self, key: str, a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
        """The kept flat buffer for one InfoNCE's [len(a), len(b)] exp logits (one per call site)."""
        like = torch.empty(0, dtype=torch.float32, device=a.device)
        size = round_rows(a.shape[0]) * round_rows(b.shape[0])
        return self._rows_buffers.get("nce_" + key, size, like, round_rows(n) ** 2)

    def _fac(self, rows: torch.Tensor) -> torch.Tensor:
        """FAC over the batch's item branch rows [B, branches, d]."""
        t = self.params.ssl_temp
        return self._fac_levels(rows, lambda j, a, b: _info_nce(a, b, t))

    def _fac_levels(self, rows: torch.Tensor, nce) -> torch.Tensor:
        """The FAC levels over item branch rows [n, B, d]; ``nce(level, joint, modal)`` is the InfoNCE."""
        joint = rows[:, 0]
        loss = 0.0
        for j in range(len(self.modal)):
            joint = self.fac_joint[j](joint)
            loss = loss + nce(j, joint, self.fac_modal[j](rows[:, j + 1]))
        return loss

    def _fac_counted(self, rows: torch.Tensor, counts: torch.Tensor, n: int) -> torch.Tensor:
        """FAC over distinct item rows, each standing for ``counts`` of the n batch rows."""
        t = self.params.ssl_temp
        return self._fac_levels(rows, lambda j, a, b: _counted_info_nce(
            a, b, t, counts, counts, None, n, self._nce_buffer(f"fac{j}", a, b, n)))

    def _two_views(self, users: torch.Tensor, items: torch.Tensor, dropout: float, mask: bool) -> torch.Tensor:
        inputs = self._item_inputs()
        views = []
        if mask:  # two different branches dropped, one per view
            first = int(torch.randint(self.n_branches, (1,)))
            second = (first + 1 + int(torch.randint(self.n_branches - 1, (1,)))) % self.n_branches
            masked = (first, second)
        for v in range(2):
            x = list(inputs)
            if mask:
                x[masked[v]] = torch.zeros_like(x[masked[v]])
            u_br, i_br = self._propagate(x, dropout)
            views.append((F.normalize(self._fuse(u_br.index_select(0, users), self.read_user), dim=1),
                          F.normalize(self._fuse(i_br.index_select(0, items), self.read_item), dim=1)))
        (u1, i1), (u2, i2) = views
        t = self.params.ssl_temp
        return _info_nce(u1, u2, t) + _info_nce(i1, i2, t)

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        p = self.params
        b = batch.users.shape[0]
        # only the batch's rows are read out (the read-outs are row-wise: these rows equal compute()'s)
        if self._fast():  # and only its distinct users and items, each weighted by its count
            ub, u_inv, u_count = torch.unique(batch.users, return_inverse=True, return_counts=True)
            ib, i_inv, i_count = torch.unique(batch.pos_items, return_inverse=True, return_counts=True)
            rows = self._fast_rows(ub, ib)
            u_count, i_count = u_count.to(rows.dtype), i_count.to(rows.dtype)
            u = F.normalize(self._fuse(rows[: len(ub)], self.read_user), dim=1)
            i = F.normalize(self._fuse(rows[len(ub) :], self.read_item), dim=1)
            loss = _counted_info_nce(u, i, p.temp, u_count, i_count, (u_inv, i_inv), b,
                                     self._nce_buffer("main", u, i, b))
            fac = (lambda: self._fac_counted(rows[len(ub) :], i_count, b))
        else:
            rows = self._batch_rows(self._item_inputs(), torch.cat([batch.users, batch.pos_items + self.n_users]))
            u = F.normalize(self._fuse(rows[:b], self.read_user), dim=1)
            i = F.normalize(self._fuse(rows[b:], self.read_item), dim=1)
            loss = _info_nce(u, i, p.temp)
            fac = (lambda: self._fac(rows[b:]))
        if p.ssl_alpha > 0:
            if p.ssl_task == "FAC":
                ssl = fac()
            elif p.ssl_task == "FD":
                ssl = self._two_views(batch.users, batch.pos_items, p.dropout_rate, mask=False)
            else:
                ssl = self._two_views(batch.users, batch.pos_items,
                                      p.dropout_rate if p.ssl_task == "FD+FM" else 0.0, mask=True)
            loss = loss + p.ssl_alpha * ssl
        if p.reg_weight > 0:
            loss = loss + p.reg_weight * l2_penalty(p.reg_form, self.user_embedding(batch.users), self.item_embedding(batch.pos_items))
        return loss

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._rows_buffers.clear()  # not needed to score (lower eval peak)
        return self.cached(lambda: self.compute()[:2])
