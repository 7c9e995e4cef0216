"""MGCN: Yu et al., "Multi-View Graph Convolutional Network for Multimedia Recommendation",
ACM MM 2023 (arXiv 2308.03588); authors' code github.com/demonph10/MGCN (built on MMRec).
Sections are named by their titles in the paper (equation numbers are not cited: the PDF
was not at hand when this was written; see docs/backbones/mgcn.md).

- Behaviour-guided purifier (paper section "Behavior-Guided Purifier"): per modality the features are projected,
  E_m = W_m x_m + b_m (d_m -> d), and gated by the item ID embedding,
  E~_m = E_id * sigmoid(W'_m E_m + b'_m). The paper writes a single map from x_m into the
  gate; the authors' code composes the projection and a d x d gate layer, which we follow
  (an affine map of an affine map: same function class, the code's parametrisation).
- Multi-view information encoder (section "Multi-View Information Encoder"):
  * user-item view (subsection "User-Item View"): LightGCN with ``n_ui_layers`` layers on D^-1/2 A D^-1/2 of
    the train graph; the ID representation is the mean of layers 0..L ("content" in the
    authors' code);
  * item-item view (subsection "Item-Item View"): per modality a cosine kNN graph of the raw features (k = 10,
    similarity-weighted edges, self included, D^-1/2 S D^-1/2 with D the row sums: the
    authors' sparse ``build_knn_normalized_graph(..., norm_type='sym')``), ``n_layers``
    convolutions of E~_m on it, then users aggregate their items' modality embeddings
    through the normalised user-item block D_u^-1/2 R D_i^-1/2 (same subsection). The graph is built
    once at construction, in row chunks, and cached by feature content
    (:mod:`cliper.graphs.knn`); never an N x N dense matrix. With a trainable fusion (cliper
    extension, issue 12) the text graph is rebuilt from the current fused text every
    ``graph_refresh_every`` epochs instead (:mod:`cliper.models.fused_graphs`).
- Behaviour-aware fuser (section "Behavior-Aware Fuser"): attention over the modalities with a shared
  query network q(h) = w^T tanh(W h + b), beta = softmax_m q(E_m) per node; modality-shared
  part E_s = sum_m beta_m E_m; modality-specific parts E_m - E_s, each gated by the user's /
  item's behaviour, sigmoid(P_m E_id + p_m) * (E_m - E_s); the modality side
  E_mm = (E_s + sum_m specific_m) / (M + 1) (the code's ``/ 3`` for M = 2); final
  representation E = E_id + E_mm.
- Self-supervised auxiliary task (section "Self-Supervised Auxiliary Task"): InfoNCE (temperature 0.2, in-batch
  negatives, cosine) between E_mm and E_id of the batch's users and of its positive items,
  weighted by ``cl_loss``. Computed by :func:`cliper.models.fused_ops.in_batch_info_nce`
  (same value as the authors' exp/log ratio; one softmax pass, no [B, B] diagonal gradient).
- Optimisation (section "Optimization"): BPR on E + ``reg_weight`` * (1/2)(|u|^2 + |i+|^2 +
  |i-|^2) / batch of the batch's final representations (the authors' ``bpr_loss``).

With one modality the attention weight is 1, the specific part vanishes and E_mm = E_m / 2
(the same formula with M = 1); the authors' code needs both modalities. The authors load
the raw features with ``from_pretrained(freeze=False)`` (trained); here ``train_features``
(default off, as for the other backbones of this package) adds a zero-initialised
trainable residual, which follows the same trajectory under Adam. Defaults follow the
authors' MGCN.yaml and MMRec's MGCN.yaml (see ``configs/models/mgcn.yaml``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from cliper.graphs.adjacency import SparseGraph, normalized_bipartite
from cliper.graphs.knn import KnnGraphCache
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender
from cliper.models.fused_graphs import FusedGraphRefresh, follow_fusion, fused_modalities, refresh_fused_graphs
from cliper.models.layers import LightGCNPropagation, bpr_loss, l2_penalty
from cliper.models.modal import feature_residuals, modal_features, present_modalities, projected_features
from cliper.models.fused_ops import in_batch_info_nce
from cliper.models.registry import register


class MGCNParams(ModelParams):
    embedding_dim: int = Field(64, gt=0)  # ID and modality embedding size (authors: embedding_size)
    n_ui_layers: int = Field(2, ge=0)  # LightGCN layers on the user-item graph
    n_layers: int = Field(1, ge=0)  # convolutions on each item-item kNN graph (authors: n_layers)
    knn_k: int = Field(10, ge=1)  # neighbours per item in the kNN graphs
    cl_loss: float = Field(0.01, ge=0.0)  # weight of the InfoNCE auxiliary task (MMRec grid [0.001, 0.01, 0.1])
    cl_temperature: float = Field(0.2, gt=0.0)  # InfoNCE temperature (hard-coded 0.2 by the authors)
    reg_weight: float = Field(1e-4, ge=0.0)  # weight of (1/2) squared L2 of the batch representations
    train_features: bool = False  # the authors train the raw feature tables; off by default (see docs)
    knn_chunk_size: int | None = Field(None, gt=0)  # rows per similarity block (None: ~64 MiB blocks; ~2 MiB tiles up to 256-d)
    graph_refresh_every: int = Field(1, ge=0)  # trainable fusion: rebuild the text kNN graph every N epochs


def info_nce(view1: torch.Tensor, view2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over rows of -log softmax_j(cos(v1_i, v2_j) / t)[i] (MGCN "Self-Supervised Auxiliary Task", in-batch negatives)."""
    return in_batch_info_nce(view1, view2, temperature)  # same value, fused kernel (models/fused_ops.py)


@register
class MGCN(Recommender):
    name = "mgcn"
    Params = MGCNParams
    modalities = ("image", "text")
    min_modalities = 1

    def __init__(self, ctx: ModelContext, params: MGCNParams):
        super().__init__(ctx, params)
        p = params
        d = p.embedding_dim
        self.modal = present_modalities(ctx.features, self.modalities)
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d)
        # purifier: projection W_m x_m + b_m and the ID-guided gate sigmoid(W'_m . + b'_m)
        self.projections = nn.ModuleDict({m: nn.Linear(ctx.features.dim(m), d) for m in self.modal})
        self.purifier_gates = nn.ModuleDict({m: nn.Linear(d, d) for m in self.modal})
        # fuser: shared attention query w^T tanh(W h + b)
        self.query = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))
        # fuser: behaviour gates of the modality-specific parts sigmoid(P_m E_id + p_m)
        self.preference_gates = nn.ModuleDict({m: nn.Linear(d, d) for m in self.modal})
        self.residuals = feature_residuals(ctx.features, self.modal, p.train_features)
        self.propagation = LightGCNPropagation(p.n_ui_layers)
        self.reset_parameters()

        norm = normalized_bipartite(ctx.train.matrix)  # D^-1/2 A D^-1/2 (user-item view)
        self.ui_graph = SparseGraph(norm, symmetric=True).to(ctx.device)
        # D_u^-1/2 R D_i^-1/2: the user-item block of the same matrix (item-item view's user aggregation, authors' self.R)
        self.user_item = SparseGraph(sp.csr_matrix(norm[: self.n_users, self.n_users :])).to(ctx.device)
        self.knn_cache = KnnGraphCache(ctx.cache_dir, ctx.knn)
        self.graph_keys: dict[str, str] = {}
        self.item_graphs: dict[str, SparseGraph] = {}
        # a trainable fusion's text graph follows its current output (cliper extension, docs/fusion.md)
        self.fused_graphs = FusedGraphRefresh(fused_modalities(ctx.features, self.modal), p.graph_refresh_every,
                                              p.knn_k, weighted=True, chunk_size=p.knn_chunk_size, search=ctx.knn)
        follow_fusion(self)
        with torch.no_grad():
            for m in self.modal:
                if m in self.fused_graphs.modalities:
                    continue
                x = modal_features(self.features, self.residuals, m)
                g = self.knn_cache.get(x, k=p.knn_k, modality=m, weighted=True, normalization="sym",
                                       chunk_size=p.knn_chunk_size)
                self.graph_keys[m] = self.knn_cache.last_key
                self.item_graphs[m] = SparseGraph(sp.csr_matrix(g, dtype=np.float32)).to(ctx.device)

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)

    def fused_features(self, m: str) -> torch.Tensor:
        return modal_features(self.features, self.residuals, m)

    def install_fused_graph(self, m: str, graph: sp.csr_matrix) -> None:
        self.item_graphs[m] = SparseGraph(sp.csr_matrix(graph, dtype=np.float32)).to(self.ctx.device)

    def pre_epoch_hook(self, epoch: int) -> None:
        refresh_fused_graphs(self, epoch)

    # -- model -----------------------------------------------------------------------
    def modality_views(self) -> dict[str, torch.Tensor]:
        """Per modality [users; items] after the purifier and the item-item view (users via R_norm)."""
        item_id = self.item_embedding.weight
        out = {}
        for m in self.modal:
            lin = self.projections[m]
            e = projected_features(self.features, self.residuals, m, lin.weight, lin.bias)
            h = item_id * torch.sigmoid(self.purifier_gates[m](e))
            for _ in range(self.params.n_layers):
                h = self.item_graphs[m] @ h
            out[m] = torch.cat([self.user_item @ h, h], 0)
        return out

    def fuse(self, content: torch.Tensor, views: dict[str, torch.Tensor]) -> torch.Tensor:
        """Behaviour-aware fuser: (shared + sum_m gated specific_m) / (M + 1)."""
        stacked = torch.stack([views[m] for m in self.modal], 0)  # [M, nodes, d]
        beta = torch.softmax(self.query(stacked).squeeze(-1), dim=0)  # [M, nodes]
        common = (beta.unsqueeze(-1) * stacked).sum(0)
        side = common
        for j, m in enumerate(self.modal):
            side = side + torch.sigmoid(self.preference_gates[m](content)) * (stacked[j] - common)
        return side / (len(self.modal) + 1)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(users E, items E, E_mm, E_id) with E = E_id + E_mm over users + items (fuser output)."""
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight], 0)
        content = self.propagation(self.ui_graph, ego)
        side = self.fuse(content, self.modality_views())
        final = content + side
        return final[: self.n_users], final[self.n_users :], side, content

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        p = self.params
        users, items, side, content = self.propagate()
        # index_select: deterministic backward on CPU
        u = users.index_select(0, batch.users)
        pos, neg = items.index_select(0, batch.pos_items), items.index_select(0, batch.neg_items)
        loss = bpr_loss((u * pos).sum(1), (u * neg).sum(1)) + p.reg_weight * l2_penalty(p.reg_form, u, pos, neg)
        if p.cl_loss > 0:
            n = self.n_users
            cl = info_nce(side.index_select(0, batch.pos_items + n), content.index_select(0, batch.pos_items + n),
                          p.cl_temperature)
            cl = cl + info_nce(side.index_select(0, batch.users), content.index_select(0, batch.users),
                               p.cl_temperature)
            loss = loss + p.cl_loss * cl
        return loss

    def _eval_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            users, items, _, _ = self.propagate()
        return users, items

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached(self._eval_embeddings)
