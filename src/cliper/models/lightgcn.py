"""LightGCN: He et al., "LightGCN: Simplifying and Powering Graph Convolution Network
for Recommendation", SIGIR 2020.

Embeddings propagated on the normalised user-item graph without weights or
non-linearities (Section 3.1, Eq. 7-9), layer outputs averaged (alpha_k = 1/(K+1)),
dot-product scores, BPR loss with L2 on the batch's layer-0 embeddings (Eq. 15).

Differences from MMRec's LightGCN (table on docs/backbones/lightgcn.md): none in behaviour at the
defaults (L2 ``reg_form: norm`` = its EmbLoss, xavier_uniform init, its grid); ``logsigmoid``
replaces ``log(1e-10 + sigmoid)``. ``reg_form: squared`` gives the paper's Eq. 15 form. Speed
choices that change only float rounding (same maths): the graph products run as ``embedding_bag``
(FBGEMM) instead of MKL's CSR kernel, and the batch loss is one node whose penalty sums over the
distinct rows (``_RowsLoss``).
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveInt
from torch import nn

from cliper.graphs.adjacency import BipartiteGraph, propagate_bipartite_rows
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender, RegForm
from cliper.models.layers import LightGCNPropagation, penalty_factors
from cliper.models.registry import register


class _RowsLoss(torch.autograd.Function):
    """BPR loss plus ``reg_weight`` times ``l2_penalty(form, E0[u], E0[p], E0[n])``, read from the batch's
    distinct rows (``out_*``: propagated, ``ego_*``: layer 0; ``where_*``: each triple's row) in one
    autograd node.

    The penalty needs no gathered rows: ||E0[u]||^2 = sum_k count_k ||e_k||^2 over the distinct rows,
    and its gradient is count_k e_k times the form's factor, a per-row scale. The backward writes the
    BPR gradients of u, p, n straight into the distinct rows (two index_add_), without autograd's
    chain of gathers, splits, norms and their masked divisions. Same maths as the plain expression;
    the penalty's sums and the repeated rows' gradients are taken in another order (float rounding).
    """

    @staticmethod
    def forward(ctx, out_u, out_i, ego_u, ego_i, where_u, where_i, form: str, reg_weight: float):  # type: ignore[override]
        b = where_u.numel()
        u = out_u.index_select(0, where_u)
        pn = out_i.index_select(0, where_i)
        diff = (u * pn[:b]).sum(1) - (u * pn[b:]).sum(1)
        loss = -torch.nn.functional.logsigmoid(diff).mean()
        count_u = torch.bincount(where_u, minlength=ego_u.shape[0]).to(ego_u.dtype)
        count_p = torch.bincount(where_i[:b], minlength=ego_i.shape[0]).to(ego_i.dtype)
        count_n = torch.bincount(where_i[b:], minlength=ego_i.shape[0]).to(ego_i.dtype)
        sq_u, sq_i = ego_u.pow(2).sum(1), ego_i.pow(2).sum(1)
        s_u, s_p, s_n = (count_u * sq_u).sum(), (count_p * sq_i).sum(), (count_n * sq_i).sum()
        reg, (f_u, f_p, f_n) = penalty_factors(form, (s_u, s_p, s_n), b, ego_u.shape[1])
        ctx.save_for_backward(u, pn, diff, where_u, where_i, ego_u, ego_i)
        ctx.scales = (reg_weight * f_u * count_u, reg_weight * (f_p * count_p + f_n * count_n))
        ctx.shapes = (out_u.shape, out_i.shape)
        return loss + reg_weight * reg

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        u, pn, diff, where_u, where_i, ego_u, ego_i = ctx.saved_tensors
        b = where_u.numel()
        # d(-mean logsigmoid(diff)) / d diff = -sigmoid(-diff) / B
        c = (torch.sigmoid(-diff) * (-grad / b)).unsqueeze(1)
        g_u = u.new_zeros(ctx.shapes[0]).index_add_(0, where_u, (pn[:b] - pn[b:]).mul_(c))
        g_pn = torch.empty_like(pn)
        torch.mul(u, c, out=g_pn[:b])
        torch.mul(u, c.neg(), out=g_pn[b:])
        g_i = u.new_zeros(ctx.shapes[1]).index_add_(0, where_i, g_pn)
        scale_u, scale_i = ctx.scales
        return (g_u, g_i, ego_u * (grad * scale_u).unsqueeze(1), ego_i * (grad * scale_i).unsqueeze(1),
                None, None, None, None)


class LightGCNParams(ModelParams):
    reg_form: RegForm = "norm"  # the reference code's L2 form (layers.l2_penalty)
    embedding_dim: PositiveInt = 64
    n_layers: NonNegativeInt = 2  # propagation depth K
    reg_weight: NonNegativeFloat = 1e-4  # lambda of Eq. 15


@register
class LightGCN(Recommender):
    name = "lightgcn"
    Params = LightGCNParams

    def __init__(self, ctx: ModelContext, params: LightGCNParams):
        super().__init__(ctx, params)
        self.user_embedding = nn.Embedding(self.n_users, params.embedding_dim)
        self.item_embedding = nn.Embedding(self.n_items, params.embedding_dim)
        self.propagation = LightGCNPropagation(params.n_layers)
        # embedding_bag products: 2.3-3.4x MKL's CSR product here (adjacency.bag_mm)
        self.graph = BipartiteGraph(ctx.train.matrix, kernel="bag").to(ctx.device)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)

    def _propagate_nodes(self) -> torch.Tensor:
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight], 0)
        return self.propagation(self.graph, ego)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._propagate_nodes()
        return out[: self.n_users], out[self.n_users :]

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        # the propagation of the batch's distinct users and items only: its last layer is taken for
        # those rows (a quarter of the graph's non-zeros on Baby), and the two embedding tables are
        # propagated as the graph's user and item halves, without their concatenation
        # (adjacency.propagate_bipartite_rows): the values of propagating all nodes and selecting, the
        # gradients up to float rounding. BPR and the L2 penalty on the same rows' layer-0 embeddings
        # are one node (_RowsLoss) whose backward sums repeated rows by index_add_ in a fixed order, so
        # seeded runs repeat bit for bit
        b = batch.users.shape[0]
        users, where_u = torch.unique(batch.users, return_inverse=True)
        items, where_i = torch.unique(torch.cat([batch.pos_items, batch.neg_items]), return_inverse=True)
        out_u, out_i, ego_u, ego_i = propagate_bipartite_rows(
            self.graph, self.user_embedding.weight, self.item_embedding.weight, self.params.n_layers, users, items,
            mean=True)
        return _RowsLoss.apply(out_u, out_i, ego_u, ego_i, where_u, where_i, self.params.reg_form,
                               self.params.reg_weight)

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached(self.propagate)
