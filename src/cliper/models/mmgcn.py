"""MMGCN: Wei et al., "MMGCN: Multi-modal Graph Convolution Network for Personalized
Recommendation of Micro-video", ACM MM 2019.

One GCN per modality m over the user-item graph (Section 3):
- node inputs: user preference vectors u_m (learned, Section 3.1) and item features
  projected by a linear layer when ``<modality>_latent_dim`` is set (MMRec projects
  the image to 256 and feeds the text unprojected); rows L2-normalised;
- aggregation layer (Section 3.2, Eq. 1-2): h = LeakyReLU(mean_{j in N(i)} W_1 x_j),
  the mean over graph neighbours (MMRec's ``aggr='mean'``) or the sum (``aggregation: add``);
- combination layer (Section 3.3, Eq. 5-6): x_hat = LeakyReLU(W_3 x) + x_id with the
  shared ID embedding x_id, then x' = LeakyReLU(W_2 [h ; x_hat]) (``combination: concat``,
  what MMRec runs) or LeakyReLU(W_2 h + x_hat) (``combination: add``);
- prediction (Section 3.4, Eq. 7): user and item representations are combined over
  modalities (MMRec's mean, i.e. the paper's sum divided by the number of modalities)
  and scored by the inner product; BPR loss (Eq. 8) with L2 on the batch's ID
  embeddings and the image preference table (MMRec's coverage).

Speed: every layer's neighbourhood mean is one sparse product with the row-normalised
adjacency D^-1 A (a :class:`SparseGraph`, backward by its transpose), not an edge-list
scatter over 2|E| gathered message rows. The operator is bipartite, so users and items
are propagated as two blocks (A_ui x_i, A_iu x_u): no [U+I, d] concatenation or its
backward copies; each block multiplies A (x W_1) or (A x) W_1, whichever runs the dense
product on fewer rows; and an unprojected frozen modality (MMRec's text) is normalised
once and gets no gradient, instead of both on every batch. Same maths as the stacked form
(equal up to float rounding).

Differences from the reference code (MMRec's mmgcn.py; docs/backbones/mmgcn.md has the table):
- ID embedding and preference tables are fixed random tensors by default, as in MMRec and the
  authors' code (plain tensors, never optimised; the published numbers come from that);
  ``train_ids: true`` makes them trained parameters, as the paper describes.
- L2 covers the image preference table only (MMRec); ``preference_penalty: all`` adds the text
  one. With fixed tables the whole term is a constant, so ``reg_weight`` does not change training.
- initialisation as MMRec: xavier-normal W_1, W_3 and first-layer W_2; later W_2, the image
  projection and all biases keep PyTorch's default Linear init.
- ``n_layers`` is honoured (default 3, what MMRec runs; its yaml's 2 is unused).
- scoring recomputes the representations from the current weights; MMRec reuses those of the
  last training batch, one optimiser step old (MMGCN has no dropout, so only that step differs).
  Kept: scores then depend on the saved weights alone; the stale variant moved R@20 / N@20 by
  about 1% either way in seeded runs (docs/backbones/mmgcn.md, "Scoring with the last training batch").
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveInt
from torch import nn

from cliper.graphs.adjacency import SparseGraph
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender, RegForm
from cliper.models.layers import bpr_loss, l2_penalty, row_normalize
from cliper.models.registry import register


class MMGCNParams(ModelParams):
    reg_form: RegForm = "mean"  # the reference code's L2 form (layers.l2_penalty)
    embedding_dim: PositiveInt = 64  # ID embedding / output size of every combination layer
    n_layers: int = Field(3, ge=1)  # graph layers per modality (MMRec's code runs 3)
    image_latent_dim: PositiveInt | None = 256  # project image features to this width first (None: raw)
    text_latent_dim: PositiveInt | None = None  # MMRec feeds text features unprojected
    aggregation: Literal["mean", "add"] = "mean"  # neighbourhood aggregation of Eq. 1
    combination: Literal["concat", "add"] = "concat"  # g_co of Eq. 6
    reg_weight: NonNegativeFloat = 1e-4  # L2 on batch ID embeddings + preference table(s) (MMRec grid 0 ... 0.1)
    train_ids: bool = False  # train ID embeddings + preferences (paper); MMRec keeps them fixed random
    preference_penalty: Literal["image", "all"] = "image"  # preference tables in the L2 (MMRec: image only)
    negative_slope: float = 0.01  # LeakyReLU slope


def neighbour_operator(train: sp.csr_matrix, aggregation: str) -> SparseGraph:
    """(U+N) x (U+N) operator of the bipartite graph: D^-1 A for 'mean', A for 'add'."""
    n_users, n_items = train.shape
    r = sp.csr_matrix(train, dtype=np.float32)
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    a = sp.csr_matrix(a, shape=(n_users + n_items, n_users + n_items))
    if aggregation == "mean":
        deg = np.asarray(a.sum(1)).ravel()
        with np.errstate(divide="ignore"):
            inv = np.where(deg > 0, 1.0 / deg, 0.0).astype(np.float32)
        a = sp.csr_matrix(sp.diags(inv) @ a)
        return SparseGraph(a, symmetric=False)
    return SparseGraph(a, symmetric=True)


def neighbour_blocks(train: sp.csr_matrix, aggregation: str) -> tuple[SparseGraph, SparseGraph]:
    """The two off-diagonal blocks of :func:`neighbour_operator`: (users <- items, items <- users).

    The bipartite operator has zero diagonal blocks, so ``A @ [x_u; x_i] = [A_ui x_i; A_iu x_u]``;
    keeping users and items apart saves the [U+I, d] concatenations and their backward copies.
    """
    r = sp.csr_matrix(train, dtype=np.float32)
    r_t = sp.csr_matrix(r.T)
    if aggregation == "mean":
        def mean(m: sp.csr_matrix) -> sp.csr_matrix:
            deg = np.asarray(m.sum(1)).ravel()
            with np.errstate(divide="ignore"):
                inv = np.where(deg > 0, 1.0 / deg, 0.0).astype(np.float32)
            return sp.csr_matrix(sp.diags(inv) @ m)

        r, r_t = mean(r), mean(r_t)
    return SparseGraph(r), SparseGraph(r_t)


def _aggregate(block: SparseGraph, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``block @ (x @ w)``, multiplied in the order that runs the dense product on fewer rows.

    The operator is linear, so A (x W) = (A x) W; with more source rows than target rows
    (users -> items on Amazon data) aggregating first makes the [rows, w] x [w, w]
    product, and its two backward products, run over the targets only.
    """
    if block.shape[0] < block.shape[1]:
        return (block @ x) @ w
    return block @ (x @ w)


class ModalityGCN(nn.Module):
    """The graph of one modality: preferences + projected features through L layers."""

    def __init__(self, n_users: int, feat_dim: int, latent_dim: int | None, params: MMGCNParams):
        super().__init__()
        d = params.embedding_dim
        width = latent_dim or feat_dim
        self.slope = params.negative_slope
        self.concat = params.combination == "concat"
        self.projection = nn.Linear(feat_dim, latent_dim) if latent_dim else None
        if params.train_ids:
            self.preference = nn.Parameter(torch.empty(n_users, width))
        else:  # MMRec: a fixed random table, never optimised
            self.register_buffer("preference", torch.empty(n_users, width))
        self.conv = nn.ParameterList()
        self.linear = nn.ModuleList()
        self.combine = nn.ModuleList()
        for layer in range(params.n_layers):
            w_in = width if layer == 0 else d
            self.conv.append(nn.Parameter(torch.empty(w_in, w_in)))  # W_1 of Eq. 1
            self.linear.append(nn.Linear(w_in, d))  # W_3 of Eq. 5
            self.combine.append(nn.Linear(w_in + d if self.concat else w_in, d))  # W_2 of Eq. 6
        self._item_source: torch.Tensor | None = None  # frozen features the cached input was made from
        self._item_version = -1
        self._item_cache: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MMRec's init: xavier-normal W_1, W_3, first W_2; the rest PyTorch's Linear default."""
        nn.init.xavier_normal_(self.preference)
        if self.projection is not None:
            self.projection.reset_parameters()
        for layer, (w, lin, comb) in enumerate(zip(self.conv, self.linear, self.combine)):
            nn.init.xavier_normal_(w)
            lin.reset_parameters()
            nn.init.xavier_normal_(lin.weight)
            comb.reset_parameters()
            if layer == 0:
                nn.init.xavier_normal_(comb.weight)

    def item_input(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised item rows of the layer-1 input: projected features, or the raw ones.

        Unprojected frozen features are normalised once and reused (a constant: no
        gradient, no per-batch normalisation); a trainable fusion's output is not cached.
        """
        if self.projection is not None:
            return row_normalize(self.projection(features))
        if features.requires_grad:
            return row_normalize(features)
        if self._item_source is not features or self._item_version != features._version:
            self._item_cache = F.normalize(features.detach())
            self._item_source, self._item_version = features, features._version
        return self._item_cache

    def forward(self, blocks: tuple[SparseGraph, SparseGraph], features: torch.Tensor,
                id_users: torch.Tensor, id_items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(user rows, item rows) of the last layer; ``blocks`` from :func:`neighbour_blocks`.

        Equal to running the layers on ``x = normalize([preference; features])`` with the full
        operator; users and items are kept apart, so no gradient is computed for constant
        item rows and no [U+I, d] concatenation is made.
        """
        g_ui, g_iu = blocks
        xu = row_normalize(self.preference)  # row-wise, so normalising the blocks apart is the same
        xi = self.item_input(features)
        slope = self.slope
        for w, lin, comb in zip(self.conv, self.linear, self.combine):
            hu = F.leaky_relu(_aggregate(g_ui, xi, w), slope)  # Eq. 1: users aggregate their items' W_1 x_j
            hi = F.leaky_relu(_aggregate(g_iu, xu, w), slope)  # ... items their users'
            xhu = F.leaky_relu(lin(xu), slope) + id_users  # Eq. 5
            xhi = F.leaky_relu(lin(xi), slope) + id_items
            if self.concat:  # Eq. 6, W_2 [h ; x_hat] as two blocks of W_2 (no [N, w + d] copy)
                w_h = comb.weight[:, : hu.shape[1]].T
                w_x = comb.weight[:, hu.shape[1] :].T
                # out-of-place addmm: under bf16 autocast the in-place form would mix dtypes
                xu = F.leaky_relu(torch.addmm(torch.addmm(comb.bias, hu, w_h), xhu, w_x), slope)
                xi = F.leaky_relu(torch.addmm(torch.addmm(comb.bias, hi, w_h), xhi, w_x), slope)
            else:
                xu = F.leaky_relu(comb(hu) + xhu, slope)  # Eq. 6, element-wise
                xi = F.leaky_relu(comb(hi) + xhi, slope)
        return xu, xi


@register
class MMGCN(Recommender):
    name = "mmgcn"
    Params = MMGCNParams
    modalities = ("image", "text")
    min_modalities = 1

    def __init__(self, ctx: ModelContext, params: MMGCNParams):
        super().__init__(ctx, params)
        self.used = [m for m in ("image", "text") if self.features.has(m)]
        latent = {"image": params.image_latent_dim, "text": params.text_latent_dim}
        self.gcns = nn.ModuleDict(
            {m: ModalityGCN(self.n_users, self.features.dim(m), latent[m], params) for m in self.used}
        )
        ids = torch.empty(self.n_users + self.n_items, params.embedding_dim)
        if params.train_ids:
            self.id_embedding = nn.Parameter(ids)
        else:  # MMRec: a fixed random table (a buffer, so checkpoints still hold it)
            self.register_buffer("id_embedding", ids)
        nn.init.xavier_normal_(self.id_embedding)
        self.graph = neighbour_operator(ctx.train.matrix, params.aggregation).to(ctx.device)
        g_ui, g_iu = neighbour_blocks(ctx.train.matrix, params.aggregation)
        self.blocks = (g_ui.to(ctx.device), g_iu.to(ctx.device))

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        id_u, id_i = self.id_embedding[: self.n_users], self.id_embedding[self.n_users :]
        users, items = 0.0, 0.0
        for m in self.used:
            u, i = self.gcns[m](self.blocks, self.features.get(m), id_u, id_i)
            users, items = users + u, items + i
        return users / len(self.used), items / len(self.used)

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        users, items = self.propagate()
        u = users[batch.users]
        loss = bpr_loss((u * items[batch.pos_items]).sum(1), (u * items[batch.neg_items]).sum(1))
        ids = self.id_embedding
        pos, neg = ids[self.n_users + batch.pos_items], ids[self.n_users + batch.neg_items]
        f = self.params.reg_form
        reg = l2_penalty(f, ids[batch.users]) + 0.5 * l2_penalty(f, pos, neg)
        penalised = self.used if self.params.preference_penalty == "all" else [m for m in self.used if m == "image"]
        if penalised:  # a text-only MMGCN penalises no preference table by default
            reg = reg + l2_penalty(f, *[self.gcns[m].preference for m in penalised])
        return loss + self.params.reg_weight * reg

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached(self.propagate)
