"""DualGNN: Wang et al. (Qifan Wang, Yinwei Wei, Jianhua Yin, Jianlong Wu, Xuemeng Song,
Liqiang Nie), "DualGNN: Dual Graph Neural Network for Multimedia Recommendation",
IEEE Transactions on Multimedia, 2021.

- Single-modal representation learning (Section III-B): per modality m, item features
  pass a two-layer MLP (d -> 4*dim -> dim, LeakyReLU between) and users get a learned
  preference vector; rows are L2-normalised and propagated on the symmetric-normalised
  user-item graph without weights, output x + A x + A^2 x (``n_layers`` = 2 products).
- Multi-modal representation learning (Section III-C): each user fuses its modality
  representations with its own learned weights (``weighted_sum``: initialised to a softmax
  over modalities, then free), and the fused user vectors are aggregated over the user
  co-occurrence graph - the top-k users sharing the most train items, weighted by the
  softmax of the shared-item counts (or uniformly) - and added: u <- u + sum_v w_uv u_v.
  Items are the sum of their modality representations.
- Prediction (Section III-D): inner product, BPR loss. The reference implementation uses
  log2 in the BPR loss; ``loss_log_base_2`` keeps that scale. L2 on the batch users'
  preference vectors and on the fusion weights.

The user graph is built once per train graph with sparse products
(:func:`cliper.graphs.user_graph.build_user_graph`) and cached in ``ctx.cache_dir``.

Differences from the reference code (MMRec's dualgnn.py; docs/backbones/dualgnn.md has the table):
- k = 40 neighbours by default, what MMRec's model hard-codes (its top-200 list, first 40).
- users with fewer than k neighbours use the neighbours they have; MMRec pads the list by
  re-sampling among them every epoch, a fixed-width-tensor artefact that randomly re-weights them.
- user fusion follows the paper (a plain bug there): MMRec adds the text representation into
  the image one in place, so users weigh (image + text) and text;
  ``reference_fusion: true`` reproduces that.
- MMRec's unused item fusion weights (penalised, never in a score) are left out.
- scoring recomputes the representations from the current weights; MMRec reuses those of the
  last training batch, one optimiser step old (no dropout, so only that step differs).
  Kept: scores then depend on the saved weights alone; the stale variant moved R@20 / N@20 by
  about 1% either way in seeded runs (docs/backbones/mmgcn.md, "Scoring with the last training batch").
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveInt
from torch import nn

from cliper.graphs.adjacency import SparseGraph, bipartite_graph, layer_sum
from cliper.graphs.user_graph import build_user_graph
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender, RegForm
from cliper.models.fused_ops import linear as fused_linear
from cliper.models.layers import bpr_loss, l2_penalty
from cliper.models.registry import register


class DualGNNParams(ModelParams):
    reg_form: RegForm = "mean"  # the reference code's L2 form (layers.l2_penalty)
    embedding_dim: PositiveInt = 64  # modality representation size (MMRec dim_latent)
    hidden_multiplier: int = Field(4, ge=1)  # feature MLP hidden width = multiplier * embedding_dim
    n_layers: int = Field(2, ge=0)  # propagations on the user-item graph (x + Ax + A^2x)
    k: int = Field(40, ge=1)  # neighbours per user in the co-occurrence graph (MMRec's model: 40)
    user_weighting: Literal["softmax", "mean"] = "softmax"  # neighbour weights in the user graph
    reg_weight: NonNegativeFloat = 1e-4  # L2 on batch preferences + fusion weights (MMRec grid 0.1 ... 1e-5)
    loss_log_base_2: bool = True  # -mean log2 sigmoid, as the reference implementation
    reference_fusion: bool = False  # MMRec's in-place bug: user = w_v (image + text) + w_t text


class ModalityEncoder(nn.Module):
    """Feature MLP + user preferences of one modality, propagated on the user-item graph
    (x + Ax + ... + A^L x); DualGNN's and DRAGON's heterogeneous-graph branch."""

    def __init__(self, n_users: int, feat_dim: int, embedding_dim: int, hidden_multiplier: int, n_layers: int):
        super().__init__()
        d = embedding_dim
        self.n_layers = n_layers
        self.mlp_in = nn.Linear(feat_dim, hidden_multiplier * d)
        self.mlp_out = nn.Linear(hidden_multiplier * d, d)
        self.preference = nn.Parameter(torch.empty(n_users, d))
        nn.init.xavier_normal_(self.preference)

    def forward(self, graph: SparseGraph, features: torch.Tensor) -> torch.Tensor:
        # both layers by oneDNN's fp32 kernel (fused_ops.linear), faster here than MKL's
        hidden = F.leaky_relu(fused_linear(features, self.mlp_in.weight, self.mlp_in.bias))
        feats = fused_linear(hidden, self.mlp_out.weight, self.mlp_out.bias)
        x = F.normalize(torch.cat([self.preference, feats], 0))
        return layer_sum(graph, x, self.n_layers)  # one autograd node, same values as the per-layer loop


@register
class DualGNN(Recommender):
    name = "dualgnn"
    Params = DualGNNParams
    modalities = ("image", "text")
    min_modalities = 1

    def __init__(self, ctx: ModelContext, params: DualGNNParams):
        super().__init__(ctx, params)
        self.used = [m for m in ("image", "text") if self.features.has(m)]
        self.encoders = nn.ModuleDict(
            {m: ModalityEncoder(self.n_users, self.features.dim(m), params.embedding_dim, params.hidden_multiplier,
                                params.n_layers) for m in self.used}
        )
        w = torch.empty(self.n_users, len(self.used))
        nn.init.xavier_normal_(w)
        self.user_modality_weight = nn.Parameter(torch.softmax(w, 1))
        # embedding_bag's CSR kernel (adjacency.bag_mm): faster than MKL's at these widths, float rounding apart
        self.graph = bipartite_graph(ctx.train.matrix, kernel="bag").to(ctx.device)
        self.user_graph_matrix = build_user_graph(ctx.train.matrix, params.k, params.user_weighting, ctx.cache_dir)
        self.user_graph = SparseGraph(self.user_graph_matrix, kernel="bag").to(ctx.device)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        reps = [self.encoders[m](self.graph, self.features.get(m)) for m in self.used]
        items = sum(r[self.n_users :] for r in reps)
        if len(reps) == 1:
            users = reps[0][: self.n_users]
        else:
            user_reps = [r[: self.n_users] for r in reps]
            if self.params.reference_fusion:  # MMRec's `representation += t_rep` aliases the image rep
                user_reps[0] = user_reps[0] + user_reps[1]
            stacked = torch.stack(user_reps, 1)  # [U, M, d]
            users = torch.einsum("umd,um->ud", stacked, self.user_modality_weight)
        users = users + self.user_graph @ users
        return users, items

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        users, items = self.propagate()
        u = users[batch.users]
        loss = bpr_loss((u * items[batch.pos_items]).sum(1), (u * items[batch.neg_items]).sum(1))
        if self.params.loss_log_base_2:
            loss = loss / math.log(2.0)
        f = self.params.reg_form
        reg = l2_penalty(f, *[e.preference[batch.users] for e in self.encoders.values()])
        reg = reg + l2_penalty(f, self.user_modality_weight)
        return loss + self.params.reg_weight * reg

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached(self.propagate)
