"""DRAGON: Zhou et al. (Hongyu Zhou, Xin Zhou, Lingzi Zhang, Zhiqi Shen),
"Enhancing Dyadic Relations with Homogeneous Graphs for Multimodal Recommendation",
ECAI 2023 (arXiv 2301.12097). Authors' code: github.com/hongyurain/DRAGON, also MMRec's
``models/dragon.py`` + ``configs/model/DRAGON.yaml`` (the same implementation); this module
follows that code where the paper leaves a choice open. Sections are cited by their titles
in the paper (Sec. 3 "Methodology").

- Heterogeneous graph (Sec. 3.1, dual representation learning on the user-item graph): per
  modality m the item features pass a two-layer MLP (d_m -> 4*dim -> dim, LeakyReLU between),
  users get a learned preference table P_m; the rows [P_m; MLP_m(x_m)] are L2-normalised and
  propagated on the symmetric-normalised user-item graph without weights or non-linearity,
  output x + A x + A^2 x (``n_ui_layers`` = 2 products, the code's two ``conv_embed_1`` calls).
- Homogeneous item-item graph (Sec. 3.1, item-item graph): per modality a cosine kNN graph
  (k = ``knn_k`` = 10, edges 1, D^-1/2 A D^-1/2), mixed as S = a S_v + (1 - a) S_t with the
  image weight a = 0.1, built ONCE from the raw features and frozen (as FREEDOM), in row
  chunks, cached by feature content (:mod:`cliper.graphs.knn`); with a trainable fusion the
  text graph is rebuilt from the current fused text every ``graph_refresh_every`` epochs
  instead (cliper extension, issue 12, :mod:`cliper.models.fused_graphs`). ``n_mm_layers`` products
  h = S^L e_i, item = e_i + h.
- Homogeneous user-user graph (Sec. 3.1, user-user graph): each user's top-k (``user_k`` =
  40, the code's ``self.k``) co-interacting users, weighted by the softmax of the shared-item
  counts; user = e_u + sum_v w_uv e_v (:func:`cliper.graphs.user_graph.build_user_graph`,
  sparse products, cached by the train graph).
- Multimodal fusion (Sec. 3.2, attentive concatenation): users concatenate their modality
  representations each scaled by a per-user learned weight (initialised to a softmax over
  modalities, then free: the code's ``weight_u`` with ``construction = 'cat'``); items
  concatenate theirs unweighted. With one modality its representation is used alone.
- Optimisation (Sec. 3.3): inner-product scores, BPR with log2 (the code's
  ``-mean log2 sigmoid``; ``loss_log_base_2``), plus ``reg_weight`` times the mean square of
  the batch users' preference rows of each modality and of the whole fusion-weight table.

Differences from the authors' code (all on the docs page ``docs/backbones/dragon.md``): users
with fewer than ``user_k`` co-interacting users keep the neighbours they have (the code pads
the list by re-sampling among them each epoch with unseeded numpy, which randomly
re-weights them); the code's top-200 pre-list is not needed (top-40 of all is the same set);
ranking uses embeddings recomputed in eval mode after the last step (the code scores with
the embeddings of the last training batch, one optimiser step stale); unused code parts
(``image_trs``/``text_trs``, ``MLP_v``/``MLP_t``/``MLP_user``, ``weight_i``, the node-drop
edge lists that ``forward`` never reads) are left out.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn

from cliper.graphs.adjacency import SparseGraph, bipartite_graph
from cliper.graphs.knn import KnnGraphCache
from cliper.graphs.user_graph import build_user_graph
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender, RegForm
from cliper.models.fused_graphs import FusedGraphRefresh, follow_fusion, fused_modalities, refresh_fused_graphs
from cliper.models.dualgnn import ModalityEncoder
from cliper.models.layers import bpr_loss, l2_penalty
from cliper.models.modal import modality_weights, present_modalities
from cliper.models.registry import register


class DRAGONParams(ModelParams):
    reg_form: RegForm = "mean"  # the reference code's L2 form (layers.l2_penalty)
    embedding_dim: int = Field(64, gt=0)  # per-modality representation size (code: dim_latent = 64)
    hidden_multiplier: int = Field(4, ge=1)  # feature MLP hidden width = multiplier * embedding_dim
    n_ui_layers: int = Field(2, ge=0)  # products with the user-item graph (x + Ax + A^2x)
    n_mm_layers: int = Field(1, ge=0)  # products with the frozen item-item graph
    knn_k: int = Field(10, ge=1)  # neighbours per item in each modality's kNN graph
    mm_image_weight: float = Field(0.1, ge=0.0, le=1.0)  # image share of the mixed item-item graph
    user_k: int = Field(40, ge=1)  # neighbours per user in the co-occurrence graph (code: self.k = 40)
    user_weighting: Literal["softmax", "mean"] = "softmax"  # neighbour weights (code: user_aggr_mode)
    reg_weight: float = Field(1e-4, ge=0.0)  # L2 on batch preferences + fusion weights (grid 0.1 ... 1e-5)
    loss_log_base_2: bool = True  # -mean log2 sigmoid, as the authors' code
    knn_chunk_size: int | None = Field(None, ge=1)  # rows per similarity block (None: ~64 MiB blocks; ~2 MiB tiles up to 256-d)
    graph_refresh_every: int = Field(1, ge=0)  # trainable fusion: rebuild the text kNN graph every N epochs


@register
class DRAGON(Recommender):
    name = "dragon"
    Params = DRAGONParams
    modalities = ("image", "text")
    min_modalities = 1

    def __init__(self, ctx: ModelContext, params: DRAGONParams):
        super().__init__(ctx, params)
        p = params
        self.modal = present_modalities(ctx.features, self.modalities)
        self.encoders = nn.ModuleDict({  # Sec. 3.1: one branch per modality, as DualGNN's
            m: ModalityEncoder(self.n_users, ctx.features.dim(m), p.embedding_dim, p.hidden_multiplier, p.n_ui_layers)
            for m in self.modal})
        # attentive concatenation weights (Sec. 3.2): xavier-normal [U, M], softmax over modalities, then free
        w = torch.empty(self.n_users, len(self.modal))
        nn.init.xavier_normal_(w)
        self.user_modality_weight = nn.Parameter(torch.softmax(w, 1))
        self.graph = bipartite_graph(ctx.train.matrix).to(ctx.device)
        self.user_graph_matrix = build_user_graph(ctx.train.matrix, p.user_k, p.user_weighting, ctx.cache_dir)
        self.user_graph = SparseGraph(self.user_graph_matrix).to(ctx.device)
        self.knn_cache = KnnGraphCache(ctx.cache_dir, ctx.knn)
        self.graph_keys: dict[str, str] = {}
        # a trainable fusion's text graph follows its current output (cliper extension, docs/fusion.md)
        self.fused_graphs = FusedGraphRefresh(fused_modalities(ctx.features, self.modal), p.graph_refresh_every,
                                              p.knn_k, weighted=False, chunk_size=p.knn_chunk_size, search=ctx.knn)
        self._modal_graphs: dict[str, sp.csr_matrix] = {}
        self.item_graph: SparseGraph | None = None
        follow_fusion(self)
        self.item_graph = SparseGraph(self._build_item_graph()).to(ctx.device)

    @torch.no_grad()
    def _build_item_graph(self) -> sp.csr_matrix:
        """S = a S_v + (1 - a) S_t of unweighted, sym-normalised cosine kNN graphs (Sec. 3.1, item-item graph)."""
        weights = modality_weights(self.modal, self.params.mm_image_weight)
        total = None
        for m in self.modal:
            if m not in self._modal_graphs:  # fixed features: built once at construction, then frozen
                x = self.features.get(m).detach()
                self._modal_graphs[m] = self.knn_cache.get(x, k=self.params.knn_k, modality=m, weighted=False,
                                                           normalization="sym", chunk_size=self.params.knn_chunk_size)
                self.graph_keys[m] = self.knn_cache.last_key
            g = self._modal_graphs[m]
            total = weights[m] * g if total is None else total + weights[m] * g
        return sp.csr_matrix(total, dtype=np.float32)

    def fused_features(self, m: str) -> torch.Tensor:
        return self.features.get(m)

    def install_fused_graph(self, m: str, graph: sp.csr_matrix) -> None:
        self._modal_graphs[m] = graph
        if self.item_graph is not None:  # not during construction
            self.item_graph = SparseGraph(self._build_item_graph()).to(self.ctx.device)

    def pre_epoch_hook(self, epoch: int) -> None:
        refresh_fused_graphs(self, epoch)

    def modality_representations(self) -> dict[str, torch.Tensor]:
        """[U + I, dim] per modality from the heterogeneous user-item graph (Sec. 3.1)."""
        return {m: self.encoders[m](self.graph, self.features.get(m)) for m in self.modal}

    def fuse(self, reps: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Attentive concatenation (Sec. 3.2): users [w_u1 e_u^v || w_u2 e_u^t], items [e_i^v || e_i^t]."""
        items = torch.cat([reps[m][self.n_users :] for m in self.modal], 1)
        if len(self.modal) == 1:  # one modality: its representation alone
            return reps[self.modal[0]][: self.n_users], items
        w = self.user_modality_weight
        users = torch.cat([reps[m][: self.n_users] * w[:, j : j + 1] for j, m in enumerate(self.modal)], 1)
        return users, items

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self.fuse(self.modality_representations())
        h = items
        for _ in range(self.params.n_mm_layers):  # item-item graph (Sec. 3.1)
            h = self.item_graph @ h
        users = users + self.user_graph @ users  # user-user graph (Sec. 3.1)
        return users, items + h

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        users, items = self.propagate()
        u = users.index_select(0, batch.users)
        pos, neg = items.index_select(0, batch.pos_items), items.index_select(0, batch.neg_items)
        loss = bpr_loss((u * pos).sum(1), (u * neg).sum(1))  # Sec. 3.3
        if self.params.loss_log_base_2:
            loss = loss / math.log(2.0)
        f = self.params.reg_form
        reg = l2_penalty(f, *[e.preference.index_select(0, batch.users) for e in self.encoders.values()])
        if len(self.modal) > 1:  # the code regularises weight_u only where it is used ('cat' with two modalities)
            reg = reg + l2_penalty(f, self.user_modality_weight)
        return loss + self.params.reg_weight * reg

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached(self.propagate)
