"""LGMRec: Guo et al., "LGMRec: Local and Global Graph Learning for Multimodal Recommendation",
AAAI 2024 (arXiv 2312.16400); authors' code github.com/georgeguo-cn/LGMRec, also MMRec's
``models/lgmrec.py`` (same author). Sections are named by their titles in the paper
(equation numbers are not cited: the PDF was not at hand; see docs/backbones/lgmrec.md).

- Local graph embedding, collaborative graph embedding ("Local Graph Embedding Module"):
  LightGCN with ``n_ui_layers`` layers on D^-1/2 A D^-1/2 of the train graph over the ID
  embeddings, mean of layers 0..L (E^c).
- Local graph embedding, modality graph embedding (same module): item features projected
  without bias, F_i^m = X_m W_m (d_m -> d); users start from the mean of their items,
  F_u^m = D_u^-1 R F_i^m; [F_u^m; F_i^m] is propagated ``n_mm_layers`` times on the same
  normalised graph and the LAST layer is kept (E^m). Local embedding
  E^l = E^c + sum_m normalize(E^m) (row-wise L2).
- Global hypergraph embedding, hypergraph dependency constructing ("Global Hypergraph
  Embedding Module"): ``hyper_num`` learnable hyperedge vectors per modality V_m
  [d_m, H]; item-hyperedge dependencies H_i^m = GumbelSoftmax(X_m V_m, tau), user-hyperedge
  dependencies H_u^m = GumbelSoftmax(R X_m V_m, tau) (R the raw 0/1 interaction matrix, so
  the user logits are SUMS over the user's items, as in the authors' code), soft samples,
  tau = 0.2.
- Global hypergraph embedding, hypergraph message passing (same module): with dropout of
  keep rate ``keep_rate`` on H_i^m and H_u^m (training only), ``n_hyper_layers`` rounds of
  L = H_i^T E_i, E_i <- H_i L, and users E_u = H_u L (the item input is the collaborative
  item embedding E^c_i); the global embedding E^g = sum_m [E_u^m; E_i^m]. Hypergraphs are
  [N, H] incidence matrices; H H^T (N x N) is never formed.
- Fusion and prediction ("Fusion and Prediction"): E = E^l + alpha * normalize(E^g),
  score = e_u . e_i.
- Optimisation ("Model Optimization"): BPR + ``cl_weight`` * hypergraph contrastive loss +
  ``reg_weight`` * (|u| + |i+| + |i-|) / batch. The contrastive loss (InfoNCE at
  temperature tau) pairs each batch user's image-side global embedding with its text-side
  one, all users' text-side embeddings as the candidates, and likewise for the batch's
  positive items, SUMMED over the batch (authors' ``ssl_triple_loss``). The L2 term uses
  the (unsquared) Frobenius norms of the batch's final representations divided by the
  batch size, exactly as the authors' ``reg_loss``.
- Kernels (speed only, same values; :mod:`cliper.models.fused_ops`): ``X W`` and ``X V`` run as
  ``(W^T X^T)^T``, the BLAS layout fast for a tall feature table times a narrow matrix in the
  forward and the weight gradient; the contrastive logsumexp over all users has a fused
  backward. Together about 2x per batch on Baby (benchmarks/probe_new_models.py --compare-plain).

Choices where paper and code could differ, all following the authors' (MMRec) code:
features are frozen (``from_pretrained(freeze=True)``); one temperature tau serves the
Gumbel-softmax and the contrastive loss; at evaluation the authors' ``forward`` also
draws Gumbel noise (dropout is off) — here it is drawn ONCE per evaluation pass (scores
are cached) from a generator with a fixed seed, not from the torch RNG, so the same
weights always give the same scores (``cliper evaluate`` and a serving bundle reproduce
the run's test metrics, and evaluation does not shift the training RNG stream);
``eval_gumbel_noise=False`` uses the noise-free softmax(logits / tau) instead. The first public version of the authors'
code assigned the text user-hyperedge matrix to the image one (``uv_hyper = ...``); the
MMRec copy fixes it and we follow the fix. With one modality the authors' code falls
back to E^c alone (and then crashes on the contrastive term); here the same formulas run
with that modality alone and the contrastive loss (which needs two modalities) is 0.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from cliper.graphs.adjacency import SparseGraph, normalized_bipartite
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender, RegForm
from cliper.models.layers import LightGCNPropagation, bpr_loss, l2_penalty
from cliper.models.modal import present_modalities
from cliper.models.fused_ops import cosine_logsumexp, feature_matmul
from cliper.models.registry import register



EVAL_NOISE_SEED = 20240101  # evaluation's Gumbel noise (see LGMRec.gumbel_softmax)

class LGMRecParams(ModelParams):
    reg_form: RegForm = "norm"  # the reference code's L2 form (layers.l2_penalty)
    embedding_dim: int = Field(64, gt=0)  # ID and projected-feature size (MMRec embedding_size = feat_embed_dim)
    n_ui_layers: int = Field(2, ge=0)  # LightGCN layers of the collaborative graph embedding (0: the 'mf' cf_model)
    n_mm_layers: int = Field(2, ge=0)  # propagation rounds of the modality graph embedding
    n_hyper_layers: int = Field(1, ge=1)  # hypergraph message-passing rounds (authors: n_hyper_layer)
    hyper_num: int = Field(4, ge=1)  # learnable hyperedges per modality
    keep_rate: float = Field(0.5, gt=0.0, le=1.0)  # dropout keep rate on the dependency matrices
    alpha: float = Field(0.3, ge=0.0)  # weight of the global (hypergraph) embedding
    cl_weight: float = Field(1e-4, ge=0.0)  # weight of the hypergraph contrastive loss
    reg_weight: float = Field(1e-6, ge=0.0)  # weight of (|u| + |i+| + |i-|) / batch (unsquared norms)
    tau: float = Field(0.2, gt=0.0)  # Gumbel-softmax and contrastive temperature (hard-coded 0.2)
    eval_gumbel_noise: bool = True  # draw Gumbel noise at evaluation too, as the authors' forward does


def hypergraph_contrastive(anchor: torch.Tensor, positive: torch.Tensor, candidates: torch.Tensor,
                           tau: float) -> torch.Tensor:
    """Sum over rows of -log exp(cos(a, p)/tau) / sum_j exp(cos(a, c_j)/tau) (authors' ssl_triple_loss)."""
    a, p = F.normalize(anchor, dim=1), F.normalize(positive, dim=1)
    return (cosine_logsumexp(anchor, candidates, tau) - (a * p).sum(1) / tau).sum()


@register
class LGMRec(Recommender):
    name = "lgmrec"
    Params = LGMRecParams
    modalities = ("image", "text")
    min_modalities = 1

    def __init__(self, ctx: ModelContext, params: LGMRecParams):
        super().__init__(ctx, params)
        p = params
        d = p.embedding_dim
        self.modal = present_modalities(ctx.features, self.modalities)
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d)
        # modality projections W_m [d_m, d] (no bias) and hyperedge vectors V_m [d_m, H], xavier-initialised
        self.projections = nn.ParameterDict(
            {m: nn.Parameter(torch.empty(ctx.features.dim(m), d)) for m in self.modal})
        self.hyperedges = nn.ParameterDict(
            {m: nn.Parameter(torch.empty(ctx.features.dim(m), p.hyper_num)) for m in self.modal})
        self.dropout = nn.Dropout(p=1.0 - p.keep_rate)
        self.propagation = LightGCNPropagation(p.n_ui_layers)
        self.reset_parameters()

        train = ctx.train.matrix
        self.ui_graph = SparseGraph(normalized_bipartite(train), symmetric=True).to(ctx.device)
        self.interactions = SparseGraph(train.astype(np.float32)).to(ctx.device)  # raw R (0/1)
        deg = np.asarray(train.sum(1), dtype=np.float32).ravel()
        self.inv_user_degree = torch.from_numpy(1.0 / (deg + 1e-7)).unsqueeze(1).to(ctx.device)

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        for w in (*self.projections.values(), *self.hyperedges.values()):
            nn.init.xavier_uniform_(w)

    # -- parts -----------------------------------------------------------------------
    def gumbel_softmax(self, logits: torch.Tensor, stream: int = 0) -> torch.Tensor:
        """softmax((logits + g) / tau) with g ~ Gumbel(0, 1) (noise-free at evaluation if configured).

        Training draws g from the torch RNG; evaluation from a generator seeded with
        ``EVAL_NOISE_SEED + stream`` (one stream per call site), so evaluation is a function
        of the weights alone.
        """
        if self.training:
            logits = logits - torch.empty_like(logits).exponential_().log()  # -log Exp(1) ~ Gumbel(0, 1)
        elif self.params.eval_gumbel_noise:
            gen = torch.Generator(device=logits.device).manual_seed(EVAL_NOISE_SEED + stream)
            logits = logits - torch.empty_like(logits).exponential_(generator=gen).log()
        return torch.softmax(logits / self.params.tau, dim=1)

    def dependencies(self, m: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(H_i^m [items, H], H_u^m [users, H]): Gumbel-softmax of X V and of R X V."""
        logits_i = feature_matmul(self.features.get(m), self.hyperedges[m])
        logits_u = self.interactions @ logits_i
        k = 2 * sorted(self.hyperedges).index(m)
        return self.gumbel_softmax(logits_i, k), self.gumbel_softmax(logits_u, k + 1)

    def modality_graph_embedding(self, m: str) -> torch.Tensor:
        """E^m: [D_u^-1 R X W; X W] propagated n_mm_layers times on the normalised graph (last layer)."""
        items = feature_matmul(self.features.get(m), self.projections[m])
        h = torch.cat([(self.interactions @ items) * self.inv_user_degree, items], 0)
        for _ in range(self.params.n_mm_layers):
            h = self.ui_graph @ h
        return h

    def hypergraph_passing(self, h_items: torch.Tensor, h_users: torch.Tensor,
                           item_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """n_hyper_layers rounds of L = H_i^T E_i, E_i = H_i L; users E_u = H_u L."""
        e_items = item_emb
        for _ in range(self.params.n_hyper_layers):
            lat = h_items.T @ e_items
            e_items = h_items @ lat
            e_users = h_users @ lat
        return e_users, e_items

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """(users E, items E, {m: (global users, global items)}) with E = E^l + alpha normalize(E^g)."""
        p = self.params
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight], 0)
        cge = self.propagation(self.ui_graph, ego)
        local = cge
        glob = 0.0
        hyper = {}
        for m in self.modal:
            local = local + F.normalize(self.modality_graph_embedding(m), dim=1)
            h_items, h_users = self.dependencies(m)
            e_u, e_i = self.hypergraph_passing(self.dropout(h_items), self.dropout(h_users), cge[self.n_users :])
            hyper[m] = (e_u, e_i)
            glob = glob + torch.cat([e_u, e_i], 0)
        final = local + p.alpha * F.normalize(glob, dim=1)
        return final[: self.n_users], final[self.n_users :], hyper

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        p = self.params
        users, items, hyper = self.propagate()
        u = users.index_select(0, batch.users)  # index_select: deterministic backward on CPU
        pos, neg = items.index_select(0, batch.pos_items), items.index_select(0, batch.neg_items)
        loss = bpr_loss((u * pos).sum(1), (u * neg).sum(1)) + p.reg_weight * l2_penalty(p.reg_form, u, pos, neg)
        if p.cl_weight > 0 and len(self.modal) == 2:
            (uv, iv), (ut, it) = hyper[self.modal[0]], hyper[self.modal[1]]
            cl = hypergraph_contrastive(uv.index_select(0, batch.users), ut.index_select(0, batch.users), ut, p.tau)
            cl = cl + hypergraph_contrastive(iv.index_select(0, batch.pos_items), it.index_select(0, batch.pos_items),
                                             it, p.tau)
            loss = loss + p.cl_weight * cl
        return loss

    def _eval_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            users, items, _ = self.propagate()
        return users, items

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached(self._eval_embeddings)
