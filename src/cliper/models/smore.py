"""SMORE: Ong & Khong (Rongqing Kenneth Ong, Andy W. H. Khong), "Spectrum-based Modality
Representation Fusion Graph Convolutional Network for Multimodal Recommendation", WSDM 2025
(arXiv 2412.14978). Authors' code: github.com/kennethorq/SMORE ``src/models/smore.py`` (also in
MMRec, with ``configs/model/SMORE.yaml``); this module follows that code where the paper leaves a
choice open. Sections are cited by their titles in the paper's method section.

- Projection (Spectrum Modality Fusion): x_m = W_m f_m + b_m, each modality's item features
  projected to ``embedding_dim``.
- Uni-modal denoising (Spectrum Modality Fusion): X_m = FFT(x_m) along the feature dimension
  (real FFT, orthonormal scaling), multiplied by a learnable complex filter W^c_m (one complex
  weight per frequency bin, shared by all items), back with the inverse FFT:
  x~_m = IFFT(W^c_m * X_m).
- Cross-modality spectrum fusion (Spectrum Modality Fusion): the element-wise product of the
  modality spectra, filtered by its own learnable complex filter: x~_f = IFFT(W^c_f * X_v * X_t)
  (the code multiplies the UNFILTERED spectra; followed here).
- Gated item views (Multi-modal Graph Learning): e_m = e_i * sigmoid(W_g x~_m + b) for m in
  {v, t, f}, e_i the item ID embedding.
- Item-item views (Multi-modal Graph Learning): per modality a cosine kNN graph with the
  similarities as weights (``image_knn_k`` / ``text_knn_k``), D^-1/2 S D^-1/2 with D the row
  sums, built ONCE from the raw features (frozen), in row chunks, cached by feature content
  (:mod:`cliper.graphs.knn`); the fusion graph is their element-wise MAX over the union of edges
  (the code's ``max_pool_fusion``). With a trainable fusion the text graph and the max-union
  graph are rebuilt from the current fused text every ``graph_refresh_every`` epochs instead
  (cliper extension, issue 12, :mod:`cliper.models.fused_graphs`). ``n_layers`` products
  h_m = S_m^L e_m; users of a view are R~ h_m with R~ the user-item block of the
  sym-normalised user-item adjacency.
- Behavioural view (Multi-modal Graph Learning): LightGCN (mean of layers 0..``n_ui_layers``) of
  the user and item ID embeddings on the user-item graph: e^b.
- Modality-aware preference module: attention from the fusion view onto each modality view,
  a_m = softmax_d(W_2 tanh(W_1 h_f + b_1)) * h_m (softmax over the embedding dimension); behaviour
  gates p_m = dropout(sigmoid(W_p e^b + b_p)) for m in {v, t, f}; side = mean(p_v*a_v, p_t*a_t,
  p_f*h_f); final = e^b + side. Scores: inner products of the final user and item rows.
- Optimisation (Model Optimization): BPR + ``reg_weight`` * (||u||^2 + ||i+||^2 + ||i-||^2) /
  (2 B) on the batch's final rows + ``cl_weight`` * [InfoNCE(side, behaviour) over the batch's
  positive items + InfoNCE(side, behaviour) over the batch's users], temperature 0.2, cosine
  similarities, in-batch negatives (:func:`cliper.models.fused_ops.in_batch_info_nce`: the
  code's value, fewer passes over the [B, B] matrix).

One modality (an extension; the paper and code need both): there is nothing to fuse, so the
fusion view, its filter and graph are absent, the attention query comes from the modality's own
view, and side = p_m * a_m.

Differences from the authors' code (all on ``docs/backbones/smore.md``): the raw feature tables are
not trained by default (``train_features``; the code loads them with ``freeze=False``); the L2
term divides by the actual batch size (the code by the configured 2048, which differs on an
epoch's last, smaller batch); the fusion graph keeps an edge present in one modality only with
that modality's value also when it is negative (as the code); the kNN graph is built in row
chunks instead of the dense N x N similarity; ``temperature`` is a parameter (the code
hard-codes 0.2).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from cliper.graphs.adjacency import SparseGraph, bipartite_graph, normalized_bipartite
from cliper.graphs.knn import KnnGraphCache
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender
from cliper.models.fused_graphs import FusedGraphRefresh, follow_fusion, fused_modalities, refresh_fused_graphs
from cliper.models.layers import LightGCNPropagation, bpr_loss, l2_penalty
from cliper.models.modal import feature_residuals, present_modalities, projected_features
from cliper.models.fused_ops import in_batch_info_nce
from cliper.models.registry import register


class SMOREParams(ModelParams):
    embedding_dim: int = Field(64, gt=0)  # ID embedding and projection size (code: embedding_size)
    n_ui_layers: int = Field(4, ge=0)  # LightGCN layers on the user-item graph (Baby best: 4)
    n_layers: int = Field(1, ge=0)  # convolutions on the item-item graphs
    image_knn_k: int = Field(40, ge=1)  # neighbours per item in the image kNN graph (Baby best: 40)
    text_knn_k: int = Field(15, ge=1)  # neighbours per item in the text kNN graph (Baby best: 15)
    cl_weight: float = Field(0.01, ge=0.0)  # weight of the InfoNCE terms (code: cl_loss)
    temperature: float = Field(0.2, gt=0.0)  # InfoNCE temperature (hard-coded 0.2 in the code)
    reg_weight: float = Field(1e-4, ge=0.0)  # L2 on the batch's final embeddings
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # dropout on the preference gates (code: dropout_rate)
    train_features: bool = False  # the code trains the raw feature tables; off by default (see docs)
    knn_chunk_size: int | None = Field(None, ge=1)  # rows per similarity block (None: ~64 MiB blocks; ~2 MiB tiles up to 256-d)
    graph_refresh_every: int = Field(1, ge=0)  # trainable fusion: rebuild the text kNN graph every N epochs


def _gate(d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.Sigmoid())


def _query(d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d, bias=False))


def max_union(a: sp.spmatrix, b: sp.spmatrix) -> sp.csr_matrix:
    """Element-wise max over the UNION of the stored entries (an entry stored in one only keeps its value).

    The fusion item-item graph of SMORE (Multi-modal Graph Learning; the code's ``max_pool_fusion``,
    which fills absent entries with -inf). ``scipy``'s ``maximum`` would treat absent entries as 0.
    """
    a, b = sp.coo_matrix(a), sp.coo_matrix(b)
    n_cols = a.shape[1]
    keys = np.concatenate([a.row.astype(np.int64) * n_cols + a.col, b.row.astype(np.int64) * n_cols + b.col])
    vals = np.concatenate([a.data, b.data]).astype(np.float32)
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], vals[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if keys.size else np.zeros(0, dtype=np.int64)
    out_vals = np.maximum.reduceat(vals, starts) if keys.size else vals
    uk = keys[starts] if keys.size else keys
    m = sp.csr_matrix((out_vals, (uk // n_cols, uk % n_cols)), shape=a.shape, dtype=np.float32)
    m.sort_indices()
    return m


def spectral_filter(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """IFFT(W * FFT(x)) along the feature dimension (real FFT, orthonormal); ``weight`` is [F, 2] (re, im)."""
    spec = torch.fft.rfft(x, dim=1, norm="ortho")
    return torch.fft.irfft(spec * torch.view_as_complex(weight), n=x.shape[1], dim=1, norm="ortho")


def spectral_fusion(x_v: torch.Tensor, x_t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """IFFT(W_f * FFT(x_v) * FFT(x_t)): fusion by element-wise product in the spectrum."""
    spec = torch.fft.rfft(x_v, dim=1, norm="ortho") * torch.fft.rfft(x_t, dim=1, norm="ortho")
    return torch.fft.irfft(spec * torch.view_as_complex(weight), n=x_v.shape[1], dim=1, norm="ortho")


def info_nce(view1: torch.Tensor, view2: torch.Tensor, temperature: float) -> torch.Tensor:
    """mean_i -log( exp(s_ii / t) / sum_j exp(s_ij / t) ), s the cosine similarity, in-batch negatives."""
    return in_batch_info_nce(view1, view2, temperature)  # same value, fused kernel (models/fused_ops.py)


@register
class SMORE(Recommender):
    name = "smore"
    Params = SMOREParams
    modalities = ("image", "text")
    min_modalities = 1

    def __init__(self, ctx: ModelContext, params: SMOREParams):
        super().__init__(ctx, params)
        p = params
        d = p.embedding_dim
        self.modal = present_modalities(ctx.features, self.modalities)
        self.fused = len(self.modal) == 2
        self.views = [*self.modal, "fusion"] if self.fused else list(self.modal)
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.residuals = feature_residuals(ctx.features, self.modal, p.train_features)
        self.projections = nn.ModuleDict({m: nn.Linear(ctx.features.dim(m), d) for m in self.modal})
        # complex filters, one weight per frequency bin (code: torch.randn(1, d // 2 + 1, 2))
        self.filters = nn.ParameterDict({v: nn.Parameter(torch.randn(d // 2 + 1, 2)) for v in self.views})
        self.item_gates = nn.ModuleDict({v: _gate(d) for v in self.views})  # code: gate_v / gate_t / gate_f
        self.queries = nn.ModuleDict({m: _query(d) for m in self.modal})  # code: query_v / query_t
        self.preference_gates = nn.ModuleDict({v: _gate(d) for v in self.views})  # code: gate_*_prefer
        self.propagation = LightGCNPropagation(p.n_ui_layers)

        norm = normalized_bipartite(ctx.train.matrix)
        self.graph = bipartite_graph(ctx.train.matrix).to(ctx.device)
        self.user_item = SparseGraph(sp.csr_matrix(norm[: self.n_users, self.n_users :])).to(ctx.device)
        self.knn_cache = KnnGraphCache(ctx.cache_dir, ctx.knn)
        self.graph_keys: dict[str, str] = {}
        # a trainable fusion's text graph follows its current output (cliper extension, docs/fusion.md)
        self.fused_graphs = FusedGraphRefresh(fused_modalities(ctx.features, self.modal), p.graph_refresh_every,
                                              p.text_knn_k, weighted=True, chunk_size=p.knn_chunk_size, search=ctx.knn)
        self.item_graph_matrices: dict[str, sp.csr_matrix] = {}
        follow_fusion(self)
        self.item_graph_matrices = self._build_item_graphs()
        self.item_graphs = {v: SparseGraph(g).to(ctx.device) for v, g in self.item_graph_matrices.items()}

    # -- graphs ----------------------------------------------------------------------
    @torch.no_grad()
    def _build_item_graphs(self) -> dict[str, sp.csr_matrix]:
        """Weighted, sym-normalised cosine kNN graph per modality + their element-wise max (fusion)."""
        ks = {"image": self.params.image_knn_k, "text": self.params.text_knn_k}
        graphs: dict[str, sp.csr_matrix] = {m: self.item_graph_matrices[m] for m in self.fused_graphs.modalities}
        for m in self.modal:
            if m in graphs:  # followed: built by follow_fusion
                continue
            x = self.features.get(m).detach()  # the raw (or fused) features at construction; frozen
            # a row whose kept similarities sum to <= 0 (only with k near N) becomes a zero row (the code: NaN)
            with np.errstate(invalid="ignore", divide="ignore"):
                graphs[m] = self.knn_cache.get(x, k=ks[m], modality=m, weighted=True, normalization="sym",
                                               chunk_size=self.params.knn_chunk_size)
            self.graph_keys[m] = self.knn_cache.last_key
        if self.fused:
            graphs["fusion"] = max_union(graphs["image"], graphs["text"])
        return graphs

    def fused_features(self, m: str) -> torch.Tensor:
        return self.features.get(m)

    def install_fused_graph(self, m: str, graph: sp.csr_matrix) -> None:
        self.item_graph_matrices[m] = graph
        if len(self.item_graph_matrices) < len(self.views):  # during construction
            return
        if self.fused:
            self.item_graph_matrices["fusion"] = max_union(self.item_graph_matrices["image"],
                                                           self.item_graph_matrices["text"])
        self.item_graphs = {v: SparseGraph(g).to(self.ctx.device) for v, g in self.item_graph_matrices.items()}

    def pre_epoch_hook(self, epoch: int) -> None:
        refresh_fused_graphs(self, epoch)

    # -- model -----------------------------------------------------------------------
    def spectrum(self) -> dict[str, torch.Tensor]:
        """Denoised modality signals and their spectral fusion, [I, d] each (Spectrum Modality Fusion)."""
        x = {m: projected_features(self.features, self.residuals, m, self.projections[m].weight, self.projections[m].bias)
             for m in self.modal}
        out = {m: spectral_filter(x[m], self.filters[m]) for m in self.modal}
        if self.fused:
            out["fusion"] = spectral_fusion(x["image"], x["text"], self.filters["fusion"])
        return out

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(users, items, side [U + I, d], behaviour [U + I, d])."""
        item_id = self.item_embedding.weight
        behaviour = self.propagation(self.graph, torch.cat([self.user_embedding.weight, item_id], 0))
        views = {}
        for v, s in self.spectrum().items():
            h = item_id * self.item_gates[v](s)  # gated item view (Multi-modal Graph Learning)
            for _ in range(self.params.n_layers):
                h = self.item_graphs[v] @ h
            views[v] = torch.cat([self.user_item @ h, h], 0)
        query_source = views["fusion"] if self.fused else views[self.modal[0]]
        parts = []
        for v in self.views:
            gate = F.dropout(self.preference_gates[v](behaviour), self.params.dropout, self.training)
            if v == "fusion":
                parts.append(gate * views[v])
            else:  # modality-aware attention from the fusion view (Modality-aware Preference Module)
                parts.append(gate * (torch.softmax(self.queries[v](query_source), -1) * views[v]))
        side = torch.stack(parts).mean(0)
        final = behaviour + side
        return final[: self.n_users], final[self.n_users :], side, behaviour

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        users, items, side, behaviour = self.propagate()
        u = users.index_select(0, batch.users)
        pos, neg = items.index_select(0, batch.pos_items), items.index_select(0, batch.neg_items)
        loss = bpr_loss((u * pos).sum(1), (u * neg).sum(1)) + self.params.reg_weight * l2_penalty(self.params.reg_form, u, pos, neg)
        n = self.n_users
        items_idx = batch.pos_items + n
        cl = info_nce(side.index_select(0, items_idx), behaviour.index_select(0, items_idx), self.params.temperature)
        cl = cl + info_nce(side.index_select(0, batch.users), behaviour.index_select(0, batch.users),
                           self.params.temperature)
        return loss + self.params.cl_weight * cl

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached(lambda: self.propagate()[:2])
