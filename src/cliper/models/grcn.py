"""GRCN: Wei et al. (Yinwei Wei, Xiang Wang, Liqiang Nie, Xiangnan He, Tat-Seng Chua),
"Graph-Refined Convolutional Network for Multimedia Recommendation with Implicit
Feedback", ACM MM 2020.

- Graph refining layer (Section 3.2): per modality m, item features are projected
  (LeakyReLU(W f_i)) and L2-normalised; user prototypes p_u^m are refined by routing
  (``n_routing`` iterations): alpha_ui = softmax over u's items of p_u . f_i, and
  p_u <- normalise(p_u + sum_i alpha_ui f_i). Each edge then gets a per-modality
  affinity: the softmax of p_u . f_i over the target node's neighbours (over u's items
  for the item->user direction, over i's users for user->item).
- Pruning (Section 3.2): the modality affinities are combined per edge - ``confid``:
  the max over modalities of affinity x a learned confidence of the source node (the
  reference default), or their ``mean`` / ``max`` - and passed through ReLU, so
  negative edges (likely false-positive interactions) get weight 0.
- Graph convolution (Section 3.3): ID embeddings (normalised) propagated on the
  refined, weighted graph with sum aggregation for ``id_layers`` layers, output the
  sum of the layers; each modality's content representation is x + its attention-weighted
  neighbourhood.
- Prediction (Section 3.4): user/item representation = [id ; content_1 ; ... ; content_M]
  (``fusion: concat``) or the ID part alone (``fusion: id``); inner product; BPR loss with
  L2 on the batch's ID embeddings and preference vectors.

All edge operations are products with a fixed :class:`EdgePattern` whose per-edge
values are the attention weights, differentiable in both the weights and the inputs.
Row normalisations (routing, prototypes, ID embeddings) use ``row_normalize``: F.normalize's
value with a hand-written backward (fewer passes over the [U, d] tables).

Differences from the reference code (MMRec's grcn.py; docs/backbones/grcn.md has the table):
- routing (a plain bug there, so the paper is followed): MMRec's routing message passing runs
  user->item only, so the user prototypes never change and routing is a no-op; here users
  aggregate their items as the paper describes. ``n_routing: 0`` gives MMRec's behaviour
  exactly (prototypes = the normalised preference table).
- L2 as MMRec, including its extra mean square of the whole image preference table.
- initialisation as MMRec: the projection bias keeps PyTorch's default Linear init.
- scoring recomputes the representations from the current weights; MMRec reuses those of the
  last training batch, one optimiser step old (its edge dropout is 0, so only that step differs).
  Kept: scores then depend on the saved weights alone; the stale variant moved R@20 / N@20 by
  about 1% either way in seeded runs (docs/backbones/mmgcn.md, "Scoring with the last training batch").
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveInt
from torch import nn

from cliper.graphs.edge_weights import EdgePattern
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender, RegForm
from cliper.models.layers import bpr_loss, l2_penalty, row_normalize
from cliper.models.registry import register


class GRCNParams(ModelParams):
    reg_form: RegForm = "mean"  # the reference code's L2 form (layers.l2_penalty)
    embedding_dim: PositiveInt = 64  # ID embedding size
    latent_dim: PositiveInt = 64  # modality prototype / projected feature size (MMRec latent_embedding)
    n_routing: int = Field(3, ge=0)  # routing iterations refining user prototypes (MMRec n_layers)
    id_layers: int = Field(2, ge=1)  # graph convolution layers on the refined graph
    weight_mode: Literal["confid", "max", "mean"] = "confid"  # how modality affinities combine per edge
    pruning: bool = True  # ReLU on edge weights (drop negative edges)
    fusion: Literal["concat", "id"] = "concat"  # final representation
    content_activation: bool = False  # LeakyReLU on the content convolution output (MMRec has_act=False)
    reg_weight: NonNegativeFloat = 1e-4  # L2: batch IDs + batch preferences + image preference table (MMRec grid 0.1 ... 1e-5)


class ContentRefiner(nn.Module):
    """One modality: prototype routing, edge affinities, content convolution."""

    def __init__(self, n_users: int, feat_dim: int, params: GRCNParams):
        super().__init__()
        self.n_routing = params.n_routing
        self.activation = params.content_activation
        self.projection = nn.Linear(feat_dim, params.latent_dim)
        self.preference = nn.Parameter(torch.empty(n_users, params.latent_dim))
        nn.init.xavier_normal_(self.projection.weight)  # bias: PyTorch's default, as MMRec
        nn.init.xavier_normal_(self.preference)

    def forward(self, features: torch.Tensor, ui: EdgePattern, iu: EdgePattern):
        f = row_normalize(F.leaky_relu(self.projection(features)))
        p = row_normalize(self.preference)
        for _ in range(self.n_routing):
            a = ui.segment_softmax(ui.edge_dot(p, f))
            p = row_normalize(p + ui.matmul(a, f))
        logits = ui.edge_dot(p, f)  # p_u . f_i per edge, in user-major order
        a_ui = ui.segment_softmax(logits)  # target user, over its items
        a_iu = iu.segment_softmax(ui.to_transposed_order(logits))  # target item, over its users
        users = ui.matmul(a_ui, f)
        items = iu.matmul(a_iu, p)
        if self.activation:
            users, items = F.leaky_relu(users), F.leaky_relu(items)
        return p + users, f + items, a_ui, a_iu


@register
class GRCN(Recommender):
    name = "grcn"
    Params = GRCNParams
    modalities = ("image", "text")
    min_modalities = 1

    def __init__(self, ctx: ModelContext, params: GRCNParams):
        super().__init__(ctx, params)
        self.used = [m for m in ("image", "text") if self.features.has(m)]
        self.refiners = nn.ModuleDict(
            {m: ContentRefiner(self.n_users, self.features.dim(m), params) for m in self.used}
        )
        self.id_embedding = nn.Parameter(torch.empty(self.n_users + self.n_items, params.embedding_dim))
        nn.init.xavier_normal_(self.id_embedding)
        if params.weight_mode == "confid":
            self.confidence = nn.Parameter(torch.empty(self.n_users + self.n_items, len(self.used)))
            nn.init.xavier_normal_(self.confidence)
        else:
            self.register_parameter("confidence", None)
        self.ui = EdgePattern(ctx.train.matrix).to(ctx.device)  # user <- item edges
        self.iu = self.ui.transpose()  # item <- user edges

    def _edge_weights(self, affinities: list[torch.Tensor], pattern: EdgePattern, source_offset: int) -> torch.Tensor:
        a = torch.stack(affinities, 1)  # [E, M]
        mode = self.params.weight_mode
        if mode == "confid":
            w = (a * self.confidence[source_offset + pattern.cols]).max(1).values
        elif mode == "max":
            w = a.max(1).values
        else:
            w = a.mean(1)
        return torch.relu(w) if self.params.pruning else w

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        users_c, items_c, a_ui, a_iu = [], [], [], []
        for m in self.used:
            u, i, w_ui, w_iu = self.refiners[m](self.features.get(m), self.ui, self.iu)
            users_c.append(u)
            items_c.append(i)
            a_ui.append(w_ui)
            a_iu.append(w_iu)
        w_ui = self._edge_weights(a_ui, self.ui, self.n_users)  # sources are items
        w_iu = self._edge_weights(a_iu, self.iu, 0)  # sources are users
        x = row_normalize(self.id_embedding)
        xu, xi = x[: self.n_users], x[self.n_users :]
        out_u, out_i = xu, xi
        for _ in range(self.params.id_layers):
            xu, xi = self.ui.matmul(w_ui, xi), self.iu.matmul(w_iu, xu)
            out_u, out_i = out_u + xu, out_i + xi
        if self.params.fusion == "concat":
            return torch.cat([out_u, *users_c], 1), torch.cat([out_i, *items_c], 1)
        return out_u, out_i

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        users, items = self.propagate()
        u = users[batch.users]
        loss = bpr_loss((u * items[batch.pos_items]).sum(1), (u * items[batch.neg_items]).sum(1))
        ids = self.id_embedding
        f = self.params.reg_form
        reg = l2_penalty(f, ids[batch.users]) + 0.5 * l2_penalty(
            f, ids[self.n_users + batch.pos_items], ids[self.n_users + batch.neg_items]
        )
        reg = reg + l2_penalty(f, *[r.preference[batch.users] for r in self.refiners.values()])
        if "image" in self.refiners:  # MMRec also penalises the whole image preference table
            reg = reg + l2_penalty(f, self.refiners["image"].preference)
        return loss + self.params.reg_weight * reg

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached(self.propagate)
