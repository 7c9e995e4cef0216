"""LightGCN: He et al., "LightGCN: Simplifying and Powering Graph Convolution Network
for Recommendation", SIGIR 2020.

Embeddings propagated on the normalised user-item graph without weights or
non-linearities (Section 3.1, Eq. 7-9), layer outputs averaged (alpha_k = 1/(K+1)),
dot-product scores, BPR loss with L2 on the batch's layer-0 embeddings (Eq. 15).

Differences from MMRec's LightGCN (table on docs/backbones/lightgcn.md): none in behaviour at the
defaults (L2 ``reg_form: norm`` = its EmbLoss, xavier_uniform init, its grid); ``logsigmoid``
replaces ``log(1e-10 + sigmoid)``. ``reg_form: squared`` gives the paper's Eq. 15 form.
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveInt
from torch import nn

from cliper.graphs.adjacency import BipartiteGraph, propagate_bipartite_rows
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender, RegForm
from cliper.models.layers import LightGCNPropagation, bpr_loss, l2_penalty
from cliper.models.registry import register


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
        # gradients up to float rounding. The L2 penalty reads the same rows' layer-0 embeddings (the
        # values of the three embedding lookups, without their full-table gradient buffers); the
        # index_select backward sums repeated rows in a fixed order, so seeded runs repeat bit for bit
        b = batch.users.shape[0]
        users, where_u = torch.unique(batch.users, return_inverse=True)
        items, where_i = torch.unique(torch.cat([batch.pos_items, batch.neg_items]), return_inverse=True)
        out_u, out_i, ego_u, ego_i = propagate_bipartite_rows(
            self.graph, self.user_embedding.weight, self.item_embedding.weight, self.params.n_layers, users, items,
            mean=True)
        u = out_u.index_select(0, where_u)
        p, n = out_i.index_select(0, where_i).split(b)
        loss = bpr_loss((u * p).sum(1), (u * n).sum(1))
        reg = l2_penalty(self.params.reg_form, ego_u.index_select(0, where_u), *ego_i.index_select(0, where_i).split(b))
        return loss + self.params.reg_weight * reg

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached(self.propagate)
