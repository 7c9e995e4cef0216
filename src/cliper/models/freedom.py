"""FREEDOM: Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation", ACM MM 2023 (arXiv 2211.06924).

- Frozen item-item graph (Sec. 3.1, Eq. 1-4): per modality a cosine kNN graph (k = 10,
  edge weight 1, D^-1/2 A D^-1/2), mixed as S = a_v S_v + (1 - a_v) S_t with the image
  weight a_v = 0.1. Built ONCE from the features at construction, in row chunks, and
  cached by feature content (:mod:`cliper.graphs.knn`).
- Trainable fusion (``features.fusion`` = mlp / attention; a cliper extension, issue 12):
  text reaches FREEDOM's scores only through the text kNN graph, so a graph frozen at
  construction would hold the untrained fusion. The text graph is rebuilt from the
  current fused text before every ``graph_refresh_every``-th epoch
  (:mod:`cliper.models.fused_graphs`; not cached on disk, its neighbour lists are saved
  in checkpoints); the graph itself still carries no gradient (the paper's frozen graph
  between refreshes), and the fusion learns through the alignment loss. Refused, with a
  ConfigError, when that cannot work: ``reg_weight`` = 0 (no gradient reaches the fusion)
  or ``graph_refresh_every`` = 0 (the trained fusion never reaches the scores).
- Denoised user-item graph (Sec. 3.2, Eq. 5-6): before each epoch a fraction
  ``1 - dropout`` of the train edges is kept, sampled without replacement with
  probability proportional to 1/sqrt(d_u d_i) (degree-sensitive pruning), and the kept
  graph is re-normalised; the torch RNG draws it, so seeded runs repeat. Evaluation uses
  the full graph.
- Propagation (Sec. 3.3, Eq. 7-9): ``n_mm_layers`` item-item convolutions of the item ID
  embeddings on S (h), LightGCN with ``n_ui_layers`` layers on the user-item graph,
  item representation = LightGCN output + h.
- Loss (Sec. 3.4, Eq. 10-11): BPR on the fused representations plus ``reg_weight`` times
  BPR between users and the projected image/text features (modality alignment).

Defaults follow MMRec's FREEDOM.yaml (embedding 64, k 10, image weight 0.1, dropout
from [0.8, 0.9], reg_weight from [0, 1e-5, 1e-4, 1e-3]).

Differences from MMRec's FREEDOM (table on docs/backbones/freedom.md): feature tables are frozen
by default (``train_features: true`` trains them as MMRec does: identical valid curves to 5 decimals
in seeded runs at about twice the epoch time, so a measured decision, see the docs page); no L2 term (``reg_form`` is ``none``); the alignment loss
projects only the batch's feature differences (same value, the bias cancels); embedding_dim !=
feat_embed_dim is a config error (MMRec fails with a shape error); content-keyed kNN cache.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from cliper.graphs.adjacency import SparseGraph, bipartite_graph, normalized_bipartite
from cliper.graphs.knn import KnnGraphCache
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender
from cliper.models.fused_graphs import (
    FusedGraphRefresh,
    follow_fusion,
    fused_modalities,
    refresh_fused_graphs,
    refuse_unreached_fusion,
)
from cliper.models.layers import LightGCNPropagation, bpr_loss
from cliper.models.modal import feature_residuals, modal_features, modality_weights, present_modalities
from cliper.models.registry import register


class FREEDOMParams(ModelParams):
    embedding_dim: PositiveInt = 64  # ID embedding size (MMRec embedding_size)
    feat_embed_dim: PositiveInt = 64  # projection size of each modality's features
    n_ui_layers: int = Field(2, ge=0)  # LightGCN layers on the user-item graph
    n_mm_layers: int = Field(1, ge=0)  # convolutions on the frozen item-item graph
    knn_k: int = Field(10, ge=1)  # neighbours per item in the kNN graphs
    mm_image_weight: float = Field(0.1, ge=0.0, le=1.0)  # image share of the mixed item-item graph
    dropout: float = Field(0.8, ge=0.0, lt=1.0)  # fraction of user-item edges pruned each epoch
    reg_weight: float = Field(1e-4, ge=0.0)  # weight of the modality-alignment BPR losses
    reg_form: Literal["none"] = "none"  # FREEDOM has no L2 penalty (neither has MMRec's code)
    train_features: bool = False  # true: train the raw feature tables as MMRec does (same curves, ~2x slower)
    knn_chunk_size: PositiveInt | None = None  # rows per similarity block (None: ~64 MiB blocks; ~2 MiB tiles up to 256-d)
    graph_refresh_every: int = Field(1, ge=0)  # trainable fusion: rebuild the text graph every N epochs

    @model_validator(mode="after")
    def _alignment_needs_equal_sizes(self) -> "FREEDOMParams":
        # the alignment BPR dots a user (embedding_dim) with a projected feature (feat_embed_dim);
        # MMRec's code needs them equal too (it fails with a shape error otherwise)
        if self.embedding_dim != self.feat_embed_dim:
            raise ValueError(
                f"model.feat_embed_dim ({self.feat_embed_dim}) must equal model.embedding_dim "
                f"({self.embedding_dim}): the alignment loss dots users with projected features"
            )
        return self


@register
class FREEDOM(Recommender):
    name = "freedom"
    Params = FREEDOMParams
    modalities = ("image", "text")
    min_modalities = 1

    def __init__(self, ctx: ModelContext, params: FREEDOMParams):
        super().__init__(ctx, params)
        p = params
        self.modal = present_modalities(ctx.features, self.modalities)
        self.fused_graphs = FusedGraphRefresh(fused_modalities(ctx.features, self.modal), p.graph_refresh_every,
                                              p.knn_k, weighted=False, chunk_size=p.knn_chunk_size, search=ctx.knn)
        if self.fused_graphs.modalities and p.reg_weight == 0:
            refuse_unreached_fusion(self.name, ctx.features, "reg_weight=0 leaves the fusion without gradient "
                                    "(only the alignment loss trains it); set model.reg_weight > 0 or a fixed fusion")
        if self.fused_graphs.modalities and p.graph_refresh_every == 0:
            refuse_unreached_fusion(self.name, ctx.features, "graph_refresh_every=0 keeps the untrained fusion's "
                                    "text graph, the only path from text to the scores; set it >= 1")
        self.user_embedding = nn.Embedding(self.n_users, p.embedding_dim)
        self.item_embedding = nn.Embedding(self.n_items, p.embedding_dim)
        self.projections = nn.ModuleDict({m: nn.Linear(ctx.features.dim(m), p.feat_embed_dim) for m in self.modal})
        self.residuals = feature_residuals(ctx.features, self.modal, p.train_features)
        self.propagation = LightGCNPropagation(p.n_ui_layers)
        self.reset_parameters()

        train = ctx.train.matrix.tocoo()
        self._edge_users = torch.from_numpy(train.row.astype(np.int64))
        self._edge_items = torch.from_numpy(train.col.astype(np.int64))
        du = np.asarray(ctx.train.matrix.sum(1)).ravel()
        di = np.asarray(ctx.train.matrix.sum(0)).ravel()
        # sampling weight of each edge: 1/sqrt(d_u d_i) (Eq. 5)
        self._edge_weight = torch.from_numpy(
            ((du[train.row] + 1e-7) ** -0.5 * (di[train.col] + 1e-7) ** -0.5).astype(np.float32)
        )
        self.full_graph = bipartite_graph(ctx.train.matrix).to(ctx.device)
        self.masked_graph: SparseGraph | None = None
        self.knn_cache = KnnGraphCache(ctx.cache_dir, ctx.knn)
        self.graph_keys: dict[str, str] = {}
        self._modal_graphs: dict[str, sp.csr_matrix] = {}
        self.item_graph: SparseGraph | None = None
        self._build_item_graph()
        follow_fusion(self)  # the text graph of a trainable fusion (no-op otherwise)
        self.item_graph = SparseGraph(self._mixed_graph()).to(ctx.device)

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)

    # -- graphs ----------------------------------------------------------------------
    @torch.no_grad()
    def _build_item_graph(self) -> None:
        """A_m of the fixed modalities, cached by content (Eq. 1-4); a followed one comes from follow_fusion."""
        for m in self.modal:
            if m in self.fused_graphs.modalities:  # follows the trainable fusion: follow_fusion builds it
                continue
            x = modal_features(self.features, self.residuals, m)
            # keyed by a hash of the very matrix the graph is built from
            self._modal_graphs[m] = self.knn_cache.get(x, k=self.params.knn_k, modality=m, weighted=False,
                                                       normalization="sym", chunk_size=self.params.knn_chunk_size)
            self.graph_keys[m] = self.knn_cache.last_key

    def _mixed_graph(self) -> sp.csr_matrix:
        """S = sum_m w_m D^-1/2 A_m D^-1/2 over the modalities present (Eq. 1-4)."""
        weights = modality_weights(self.modal, self.params.mm_image_weight)
        total = None
        for m in self.modal:
            g = self._modal_graphs[m]
            total = weights[m] * g if total is None else total + weights[m] * g
        return sp.csr_matrix(total, dtype=np.float32)

    def fused_features(self, m: str) -> torch.Tensor:
        return modal_features(self.features, self.residuals, m)

    def install_fused_graph(self, m: str, graph: sp.csr_matrix) -> None:
        self._modal_graphs[m] = graph
        if self.item_graph is not None:  # not during construction (the other modality may be missing)
            self.item_graph = SparseGraph(self._mixed_graph()).to(self.ctx.device)

    def prune_graph(self) -> SparseGraph:
        """Degree-sensitive edge pruning (Eq. 5-6): keep (1 - dropout) of the edges, re-normalised."""
        n_edges = self._edge_weight.numel()
        if self.params.dropout <= 0 or n_edges == 0:
            return self.full_graph
        n_keep = max(1, int(n_edges * (1.0 - self.params.dropout)))
        keep = torch.multinomial(self._edge_weight, n_keep, replacement=False).numpy()
        kept = sp.csr_matrix(
            (np.ones(n_keep, dtype=np.float32), (self._edge_users.numpy()[keep], self._edge_items.numpy()[keep])),
            shape=(self.n_users, self.n_items),
        )
        return SparseGraph(normalized_bipartite(kept), symmetric=True).to(self.ctx.device)

    def pre_epoch_hook(self, epoch: int) -> None:
        refresh_fused_graphs(self, epoch)
        self.masked_graph = self.prune_graph()

    # -- model -----------------------------------------------------------------------
    def propagate(self, graph) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.item_embedding.weight
        for _ in range(self.params.n_mm_layers):
            h = self.item_graph @ h
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight], 0)
        out = self.propagation(graph, ego)
        return out[: self.n_users], out[self.n_users :] + h

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        if self.masked_graph is None:  # no epoch hook called yet (e.g. a bare training step)
            self.masked_graph = self.prune_graph()
        users, items = self.propagate(self.masked_graph)
        u = users.index_select(0, batch.users)  # index_select: deterministic backward on CPU
        pos, neg = items.index_select(0, batch.pos_items), items.index_select(0, batch.neg_items)
        loss = bpr_loss((u * pos).sum(1), (u * neg).sum(1))
        align = 0.0
        for m in self.modal:
            # u.(W x_pos + b) - u.(W x_neg + b) = u.W(x_pos - x_neg): one projection of the batch's
            # feature differences instead of two (or MMRec's projection of every item)
            diff = modal_features(self.features, self.residuals, m, batch.pos_items) - modal_features(
                self.features, self.residuals, m, batch.neg_items
            )
            proj = diff @ self.projections[m].weight.T
            align = align + bpr_loss((u * proj).sum(1), torch.zeros_like(proj[:, 0]))
        return loss + self.params.reg_weight * align

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached(lambda: self.propagate(self.full_graph))
