"""LATTICE: Zhang et al., "Mining Latent Structures for Multimedia Recommendation", ACM MM 2021
(arXiv 2104.09036).

- Initial graphs (Sec. 3.1.1, Eq. 1-3): per modality a cosine kNN graph of the raw
  features (k = 10, similarity-weighted), normalised D^-1/2 S D^-1/2. Built in row chunks
  and cached by feature content (:mod:`cliper.graphs.knn`). With a trainable fusion
  (``features.fusion`` = mlp / attention; cliper extension, issue 12) the text initial
  graph would otherwise hold the untrained fusion for the whole run: it is rebuilt from
  the current fused text before every ``graph_refresh_every``-th epoch
  (:mod:`cliper.models.fused_graphs`; not disk-cached, neighbour lists in checkpoints).
  The fusion gets its gradient through the learned graph's edge weights; with
  ``lambda_coeff`` = 1 the learned graph has weight 0, so that combination is refused.
- Learned graphs (Sec. 3.1.2, Eq. 4-6): the same construction on the projected features
  W_m x_m + b_m, mixed with the initial graph as A_m = (1 - lambda) learned + lambda
  initial (lambda = 0.9 keeps 90 % of the original graph).
- Modality aggregation (Sec. 3.1.3, Eq. 7): softmax importance weights alpha_m;
  A = sum_m alpha_m A_m (as in the authors' code and MMRec, the learned parts are summed
  before their normalisation).
- Item-item convolution (Sec. 3.2, Eq. 8): h = A^L e_item (L = 1); the item
  representation adds the L2-normalised h to the collaborative one (Eq. 9-10).
- Collaborative part: LightGCN (2 layers) on the user-item graph; MMRec/the authors'
  code normalise it as D^-1 (A + I) (``ui_normalization="rw_self_loop"``).
- Loss (Sec. 3.3, Eq. 11): BPR + ``reg_weight`` * squared L2 of the batch's
  representations / batch size.

Graph update schedule (authors' code and MMRec): the learned graph is rebuilt, with
gradients reaching the projections and modality weights, on the first batch of every
epoch; the other batches reuse it detached. The kNN search runs in row chunks and keeps
only N*k edges, and differentiable edge weights are recomputed for those edges alone, so
no dense N x N matrix ever exists (MMRec kept two dense N x N graphs and rebuilt them for
every evaluation batch). Evaluation rebuilds the graph from the current weights once per
pass (``self.cached``). Defaults follow MMRec's LATTICE.yaml.

Speed (issue 13; docs/backbones/lattice.md#performance): the search runs in cache-sized tiles
with a grouped exact selection (:mod:`cliper.graphs.knn_search`); the first batch of an epoch
reuses the neighbour lists of the evaluation pass just before it when the projected features
are bitwise the same (:meth:`LATTICE._neighbours`; same weights, no optimiser step between),
recomputing only the differentiable edge values; the search returns indices only (float64
re-scoring just for rows float32 cannot decide, ``topk_cosine(with_values=False)``); the
projections run by oneDNN (``fused_ops.linear``), the same kernel in training and evaluation; a
trained table's projection is ``W x + b + W r`` (:func:`cliper.models.modal.projected_features`), never the sum.

Differences from MMRec's LATTICE (table on docs/backbones/lattice.md): feature tables are trained
by default as there (``train_features``); the squared L2 divides by the actual batch size, MMRec's
by ``train_batch_size`` (only an epoch's last batch differs); sparse N*k graphs, one build per
evaluation pass, the evaluation's search reused by the next epoch's rebuild, content-keyed kNN cache.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from cliper.graphs.adjacency import SparseGraph
from cliper.graphs.knn import KnnGraphCache, topk_cosine
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender
from cliper.models.fused_graphs import (
    FusedGraphRefresh,
    follow_fusion,
    fused_modalities,
    refresh_fused_graphs,
    refuse_unreached_fusion,
)
from cliper.models.fused_ops import linear as fused_linear
from cliper.models.layers import LightGCNPropagation, bpr_loss, l2_penalty
from cliper.models.modal import feature_residuals, present_modalities, projected_features
from cliper.models.registry import register


class LATTICEParams(ModelParams):
    embedding_dim: PositiveInt = 64  # ID embedding size
    feat_embed_dim: PositiveInt = 64  # size of the projected features the learned graph is built from
    n_ui_layers: int = Field(2, ge=0)  # LightGCN layers (MMRec: len(weight_size) = 2)
    n_item_layers: int = Field(1, ge=0)  # item-item convolutions (MMRec n_layers)
    knn_k: int = Field(10, ge=1)  # neighbours per item
    lambda_coeff: float = Field(0.9, ge=0.0, le=1.0)  # weight of the initial (raw-feature) graph
    reg_weight: float = Field(1e-4, ge=0.0)  # MMRec grid [0, 1e-5, 1e-4, 1e-3]
    ui_normalization: Literal["rw_self_loop", "sym"] = "rw_self_loop"  # D^-1(A+I) as MMRec, or D^-1/2 A D^-1/2
    train_features: bool = True  # train the raw feature tables, as MMRec does (they reach the learned graph once per epoch)
    knn_chunk_size: PositiveInt | None = None  # rows per similarity block (None: ~2 MiB tiles for the 64-d learned graph, ~64 MiB blocks for raw features)
    graph_refresh_every: int = Field(5, ge=0)  # trainable fusion: rebuild the text initial graph every N epochs


def _rw_self_loop(train: sp.csr_matrix) -> sp.csr_matrix:
    """D^-1 (A + I) over users + items (LATTICE's ``normalized_adj_single(adj + I)``)."""
    n_users, n_items = train.shape
    r = sp.csr_matrix(train, dtype=np.float32)
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    a = a + sp.eye(n_users + n_items, dtype=np.float32, format="csr")
    deg = np.asarray(a.sum(1)).ravel()
    return sp.csr_matrix(sp.diags((1.0 / deg).astype(np.float32)) @ a)


def _edge_spmm(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(sparse A given as edges) @ x, differentiable in both the edge values and x."""
    return torch.zeros(x.shape[0], x.shape[1], dtype=x.dtype, device=x.device).index_add(
        0, rows, vals[:, None] * x.index_select(0, cols)
    )


def _edges_to_graph(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int) -> SparseGraph:
    m = sp.csr_matrix(
        (vals.detach().cpu().numpy(), (rows.cpu().numpy(), cols.cpu().numpy())), shape=(n, n), dtype=np.float32
    )
    m.sum_duplicates()
    return SparseGraph(m)


@register
class LATTICE(Recommender):
    name = "lattice"
    Params = LATTICEParams
    modalities = ("image", "text")
    min_modalities = 1

    def __init__(self, ctx: ModelContext, params: LATTICEParams):
        super().__init__(ctx, params)
        p = params
        self.modal = present_modalities(ctx.features, self.modalities)
        self.fused_graphs = FusedGraphRefresh(fused_modalities(ctx.features, self.modal), p.graph_refresh_every,
                                              p.knn_k, weighted=True, chunk_size=p.knn_chunk_size, search=ctx.knn)
        if self.fused_graphs.modalities and p.lambda_coeff >= 1.0:
            refuse_unreached_fusion(self.name, ctx.features, "lambda_coeff=1 gives the learned graph weight 0, "
                                    "so no gradient reaches the fusion; set model.lambda_coeff < 1 or a fixed fusion")
        self.user_embedding = nn.Embedding(self.n_users, p.embedding_dim)
        self.item_embedding = nn.Embedding(self.n_items, p.embedding_dim)
        self.projections = nn.ModuleDict({m: nn.Linear(ctx.features.dim(m), p.feat_embed_dim) for m in self.modal})
        self.modal_weight = nn.Parameter(torch.full((len(self.modal),), 0.5))
        self.residuals = feature_residuals(ctx.features, self.modal, p.train_features)
        self.propagation = LightGCNPropagation(p.n_ui_layers)
        self.reset_parameters()
        if p.ui_normalization == "rw_self_loop":
            self.ui_graph = SparseGraph(_rw_self_loop(ctx.train.matrix)).to(ctx.device)
        else:
            from cliper.graphs.adjacency import bipartite_graph

            self.ui_graph = bipartite_graph(ctx.train.matrix).to(ctx.device)
        # initial graphs from the raw features, frozen (Eq. 1-3)
        self.knn_cache = KnnGraphCache(ctx.cache_dir, ctx.knn)
        self.graph_keys: dict[str, str] = {}
        self._original: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._original_graphs: dict[str, SparseGraph] = {}
        with torch.no_grad():
            for m in self.modal:
                if m in self.fused_graphs.modalities:  # follows the trainable fusion: follow_fusion builds it
                    continue
                self._set_original(m, self.knn_cache.get(self.features.get(m), k=p.knn_k, modality=m, weighted=True,
                                                         normalization="sym", chunk_size=p.knn_chunk_size))
                self.graph_keys[m] = self.knn_cache.last_key
        follow_fusion(self)  # the text initial graph of a trainable fusion (no-op otherwise)
        self._item_graph: SparseGraph | None = None  # detached graph reused within an epoch
        self._rebuild = True
        self._last_search: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # modality -> (z, neighbours)
        self.search_reuses = 0  # searches answered from _last_search (a count for tests and probes)

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)

    def _set_original(self, m: str, graph: sp.csr_matrix) -> None:
        """Install ``graph`` as modality ``m``'s initial graph (edge lists and sparse matrix)."""
        g = graph.tocoo()
        dev = self.ctx.device
        self._original[m] = (torch.from_numpy(g.row.astype(np.int64)).to(dev),
                             torch.from_numpy(g.col.astype(np.int64)).to(dev),
                             torch.from_numpy(g.data.astype(np.float32)).to(dev))
        self._original_graphs[m] = SparseGraph(sp.csr_matrix(graph, dtype=np.float32)).to(dev)

    def fused_features(self, m: str) -> torch.Tensor:
        return self.features.get(m)

    def install_fused_graph(self, m: str, graph: sp.csr_matrix) -> None:
        self._set_original(m, graph)
        self._item_graph = None

    def pre_epoch_hook(self, epoch: int) -> None:
        refresh_fused_graphs(self, epoch)
        self._rebuild = True

    # -- item-item graph -----------------------------------------------------------------
    def _projected(self, m: str) -> torch.Tensor:
        """L2-normalised W_m x_m + b_m, computed the same way in training and evaluation.

        By oneDNN (``fused_ops.linear``: the same kernel with and without gradient, for a fixed or
        a trained input), so the evaluation pass and the next epoch's first batch, with the same
        weights, give bitwise the same z, which is what lets :meth:`_neighbours` reuse the search.
        """
        lin = self.projections[m]
        return F.normalize(projected_features(self.features, self.residuals, m, lin.weight, lin.bias, fused_linear), dim=1)

    def _neighbours(self, m: str, z: torch.Tensor) -> torch.Tensor:
        """Top-k cosine neighbours [N, k] of z (no gradient).

        The first training batch of an epoch reuses the search of the pass before it when z is
        bitwise the same (the search is a deterministic function of z): the end-of-epoch
        evaluation and the next epoch's rebuild see the same weights, no optimiser step between.
        A changed weight, an edit through ``.data`` or a loaded checkpoint changes z and searches
        afresh. Evaluation passes always search, so a pass costs what it costs after an epoch.
        """
        zd = z.detach()
        hit = self._last_search.get(m)
        if self.training and hit is not None and hit[0].shape == zd.shape and torch.equal(hit[0], zd):
            self.search_reuses += 1
            return hit[1]
        _, idx = topk_cosine(zd, self.params.knn_k, self.params.knn_chunk_size, with_values=False)
        self._last_search[m] = (zd.clone(), idx)
        return idx

    def learned_edges(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edges of (1-lambda) D^-1/2 (sum_m a_m S~_m) D^-1/2 (the learned part) and the weights a."""
        p = self.params
        n = self.n_items
        alpha = torch.softmax(self.modal_weight, 0)
        rows, cols, vals = [], [], []
        for j, m in enumerate(self.modal):
            z = self._projected(m)
            idx = self._neighbours(m, z)
            kk = idx.shape[1]
            rows.append(torch.arange(n, device=z.device).repeat_interleave(kk))
            cols.append(idx.reshape(-1))
            # differentiable similarities of the kept edges only: [N, k, d] x [N, d, 1]
            sims = torch.bmm(z.index_select(0, cols[-1]).view(n, kk, -1), z.unsqueeze(2)).view(-1)
            vals.append(alpha[j] * sims)
        r, c, v = torch.cat(rows), torch.cat(cols), torch.cat(vals)
        deg = torch.zeros(n, dtype=v.dtype, device=v.device).index_add(0, r, v)
        d = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
        return r, c, (1.0 - p.lambda_coeff) * d[r] * v * d[c], alpha

    def item_graph_edges(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edges (rows, cols, values) of A = (1-lambda) norm(sum_m a_m S~_m) + lambda sum_m a_m S_m."""
        return self.item_graph_edges_from(*self.learned_edges())

    def item_graph_edges_from(self, r, c, v, alpha) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        all_r, all_c, all_v = [r], [c], [v]
        for j, m in enumerate(self.modal):
            orow, ocol, oval = self._original[m]
            all_r.append(orow)
            all_c.append(ocol)
            all_v.append(self.params.lambda_coeff * alpha[j] * oval)
        return torch.cat(all_r), torch.cat(all_c), torch.cat(all_v)

    def _item_conv(self, with_grad: bool) -> torch.Tensor:
        h = self.item_embedding.weight
        if with_grad:
            # learned part as differentiable edges; the frozen initial graphs as sparse products
            # whose only gradient is the scalar weight lambda * a_m (keeps the edge list small)
            r, c, v, alpha = self.learned_edges()
            lam = self.params.lambda_coeff
            for _ in range(self.params.n_item_layers):
                out = _edge_spmm(r, c, v, h)
                for j, m in enumerate(self.modal):
                    out = out + lam * alpha[j] * (self._original_graphs[m] @ h)
                h = out
            with torch.no_grad():
                self._item_graph = _edges_to_graph(*self.item_graph_edges_from(r, c, v, alpha), self.n_items)
            return h
        if self._item_graph is None:
            with torch.no_grad():
                self._item_graph = _edges_to_graph(*self.item_graph_edges(), self.n_items)
        for _ in range(self.params.n_item_layers):
            h = self._item_graph @ h
        return h

    # -- model -----------------------------------------------------------------------------
    def propagate(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight], 0)
        out = self.propagation(self.ui_graph, ego)
        return out[: self.n_users], out[self.n_users :] + F.normalize(h, dim=1)

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        h = self._item_conv(with_grad=self._rebuild)
        self._rebuild = False
        users, items = self.propagate(h)
        # index_select: its backward is deterministic on CPU (advanced indexing accumulates atomically)
        u = users.index_select(0, batch.users)
        pos, neg = items.index_select(0, batch.pos_items), items.index_select(0, batch.neg_items)
        loss = bpr_loss((u * pos).sum(1), (u * neg).sum(1))
        return loss + self.params.reg_weight * l2_penalty(self.params.reg_form, u, pos, neg)

    def _eval_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            r, c, v = self.item_graph_edges()  # the graph of the current weights, once per pass
            graph = _edges_to_graph(r, c, v, self.n_items)
            h = self.item_embedding.weight
            for _ in range(self.params.n_item_layers):
                h = graph @ h
            return self.propagate(h)

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached(self._eval_embeddings)
