"""BM3: Zhou et al., "Bootstrap Latent Representations for Multi-modal Recommendation",
WWW 2023 (arXiv 2207.05969).

- Encoders (Sec. 3.1, Eq. 1-3): LightGCN (``n_layers``) on the normalised user-item
  graph for ID embeddings, item representation = LightGCN output + item ID embedding;
  each modality projected by a linear layer to the embedding size.
- Contrastive view generator (Sec. 3.2, Eq. 4): the target view is the online
  representation with latent-embedding dropout (rate ``dropout``), without gradient;
  a shared predictor (linear) maps online representations.
- Loss (Sec. 3.3, Eq. 5-8), no negative sampling: graph reconstruction
  (1 - cos(p(u), i~) + 1 - cos(p(i), u~)), inter-modality feature alignment
  (1 - cos(p(f_m), i~)) and intra-modality masked feature loss (1 - cos(p(f_m), f~_m)),
  the latter two weighted by ``cl_weight``; plus ``reg_weight`` * (||U|| + ||I||) / N_items
  on the online embeddings (MMRec's EmbLoss).
- Scores: p(u) . p(i). Features enter only the ``cl_weight`` losses, so a trainable fusion
  (mlp / attention) with ``cl_weight`` = 0 would never train: refused (docs/fusion.md).

The batch's negatives are ignored. Only the batch's distinct items are projected, each
once (the loss reads no other row; MMRec projects every item on every batch). Defaults follow MMRec's BM3.yaml (n_layers from [1, 2], dropout from
[0.3, 0.5], reg_weight from [0.1, 0.01], cl_weight 2.0).

Differences from MMRec's BM3 (table on docs/backbones/bm3.md): feature tables are frozen by
default (``train_features: true`` trains them as MMRec's code does; both settings agree with an
independent MMRec-faithful BM3 within noise, +0.3% / -0.6% R@20, and are step-identical to it from
the same weights, so the cheaper frozen tables stay the default: a measured decision); target dropout is drawn per batch row (MMRec: over all rows,
then indexed, so a row repeated in a batch shares its mask there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from cliper.graphs.adjacency import bipartite_graph
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender, RegForm
from cliper.models.fused_graphs import refuse_unreached_fusion
from cliper.models.layers import LightGCNPropagation, l2_penalty
from cliper.models.modal import feature_residuals, modal_features, present_modalities
from cliper.models.registry import register


class BM3Params(ModelParams):
    reg_form: RegForm = "norm"  # the reference code's L2 form (layers.l2_penalty)
    embedding_dim: PositiveInt = 64  # ID embedding and projection size
    n_layers: int = Field(1, ge=0)  # LightGCN layers
    dropout: float = Field(0.3, ge=0.0, lt=1.0)  # latent embedding dropout of the target view
    reg_weight: float = Field(0.1, ge=0.0)  # weight of the norm penalty on the online embeddings
    cl_weight: float = Field(2.0, ge=0.0)  # weight of the multimodal alignment / masked losses
    train_features: bool = False  # true: train the raw feature tables as MMRec's code does


def _cos_loss(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


@register
class BM3(Recommender):
    name = "bm3"
    Params = BM3Params
    modalities = ("image", "text")
    min_modalities = 1

    def __init__(self, ctx: ModelContext, params: BM3Params):
        super().__init__(ctx, params)
        p = params
        self.modal = present_modalities(ctx.features, self.modalities)
        if getattr(ctx.features, "trainable", False) and p.cl_weight == 0:
            refuse_unreached_fusion(self.name, ctx.features, "cl_weight=0: features reach only the cl_weight "
                                    "losses, so the fusion gets no gradient; set model.cl_weight > 0")
        self.user_embedding = nn.Embedding(self.n_users, p.embedding_dim)
        self.item_embedding = nn.Embedding(self.n_items, p.embedding_dim)
        self.predictor = nn.Linear(p.embedding_dim, p.embedding_dim)
        self.projections = nn.ModuleDict({m: nn.Linear(ctx.features.dim(m), p.embedding_dim) for m in self.modal})
        self.residuals = feature_residuals(ctx.features, self.modal, p.train_features)
        self.propagation = LightGCNPropagation(p.n_layers)
        self.graph = bipartite_graph(ctx.train.matrix).to(ctx.device)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        nn.init.xavier_normal_(self.predictor.weight)
        for proj in self.projections.values():
            nn.init.xavier_normal_(proj.weight)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight], 0)
        out = self.propagation(self.graph, ego)
        return out[: self.n_users], out[self.n_users :] + self.item_embedding.weight

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        p = self.params
        users_all, items_all = self.propagate()
        # index_select: its backward is deterministic on CPU (advanced indexing accumulates atomically)
        u, i = users_all.index_select(0, batch.users), items_all.index_select(0, batch.pos_items)
        with torch.no_grad():  # target view: latent embedding dropout, no gradient
            u_target = F.dropout(u, p.dropout)
            i_target = F.dropout(i, p.dropout)
        loss = _cos_loss(self.predictor(u), i_target) + _cos_loss(self.predictor(i), u_target)
        mm = 0.0
        # each distinct item projected once (a batch repeats popular items; on a small catalogue
        # it holds more rows than there are items), then spread back to the batch's rows
        uniq, inverse = torch.unique(batch.pos_items, return_inverse=True)
        for m in self.modal:
            f = self.projections[m](modal_features(self.features, self.residuals, m, uniq)).index_select(0, inverse)
            with torch.no_grad():
                f_target = F.dropout(f, p.dropout)
            f_online = self.predictor(f)
            mm = mm + _cos_loss(f_online, i_target) + _cos_loss(f_online, f_target)
        reg = l2_penalty(p.reg_form, users_all, items_all)  # EmbLoss of the whole tables: / n_items
        return loss + p.reg_weight * reg + p.cl_weight * mm

    def _eval_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self.propagate()
        return self.predictor(users), self.predictor(items)

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached(self._eval_embeddings)
