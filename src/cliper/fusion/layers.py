"""Fusion layers: SUM, Concat, MLP, SA (similarity attention) and a learnable attention.

Every layer maps ``views`` [V, N, d] (L2-normalised view embeddings) and
``similarity`` [N, V] (cosine of each view with the item image, not yet divided
by tau) to fused text features [N, out_dim]. MLP and learnable attention have
weights and are trained with the recommender (the released code applied a random
MLP once; here fusion runs inside the model's forward pass).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cliper.errors import ConfigError


class ViewFusion(nn.Module):
    """Base class: ``forward(views [V,N,d], similarity [N,V]) -> [N, out_dim]``."""

    trainable = False
    name = ""  # the ``features.fusion`` value that selects this layer 

    def __init__(self, n_views: int, dim: int):
        super().__init__()
        self.n_views = n_views
        self.dim = dim

    @property
    def out_dim(self) -> int:
        return self.dim

    def weights(self, views: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor | None:
        """Per-item view weights [N, V] for attention fusions, None otherwise."""
        return None

    def extra_repr(self) -> str:
        return f"n_views={self.n_views}, dim={self.dim}, out_dim={self.out_dim}"


class SumFusion(ViewFusion):
    """t_i = sum_v t_{i,v}."""

    name = "sum"

    def forward(self, views: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        return views.sum(0)


class MeanFusion(ViewFusion):
    """t_i = mean_v t_{i,v} (SUM scaled by 1/V; same ranking geometry, tamer magnitude)."""

    name = "mean"

    def forward(self, views: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        return views.mean(0)


class ConcatFusion(ViewFusion):
    """t_i = [t_{i,1}; ...; t_{i,V}] (dimension V*d)."""

    name = "concat"

    @property
    def out_dim(self) -> int:
        return self.n_views * self.dim

    def forward(self, views: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        return views.permute(1, 0, 2).reshape(views.shape[1], -1)


class MLPFusion(ViewFusion):
    """t_i = LeakyReLU(W [t_{i,1}; ...; t_{i,V}] + b), one layer to ``out_dim`` (default d)."""

    name = "mlp"

    trainable = True

    def __init__(self, n_views: int, dim: int, out_dim: int | None = None, negative_slope: float = 0.01):
        super().__init__(n_views, dim)
        self._out = out_dim or dim
        self.linear = nn.Linear(n_views * dim, self._out)
        self.act = nn.LeakyReLU(negative_slope)
        self.reset_parameters()

    @property
    def out_dim(self) -> int:
        return self._out

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, views: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        flat = views.permute(1, 0, 2).reshape(views.shape[1], -1)
        return self.act(self.linear(flat))


class SimilarityAttentionFusion(ViewFusion):
    """SA, the paper's default: a_i = softmax_v(s_{i,v} / tau), t_i = sum_v a_{i,v} t_{i,v}."""

    name = "sa"

    def __init__(self, n_views: int, dim: int, tau: float = 0.1):
        super().__init__(n_views, dim)
        if tau <= 0:
            raise ConfigError(f"fusion tau must be positive, got {tau}")
        self.tau = float(tau)

    def weights(self, views: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        return torch.softmax(torch.nan_to_num(similarity, nan=0.0) / self.tau, dim=1)

    def forward(self, views: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        a = self.weights(views, similarity)  # [N, V]
        return torch.einsum("nv,vnd->nd", a, views)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}"


class LearnableAttentionFusion(SimilarityAttentionFusion):
    """Attention with a learned query and the similarity as a bias:
    a_i = softmax_v(q^T tanh(W t_{i,v}) + s_{i,v} / tau); starts as SA (q = 0)."""

    name = "attention"

    trainable = True

    def __init__(self, n_views: int, dim: int, tau: float = 0.1, hidden: int = 64):
        super().__init__(n_views, dim, tau)
        self.proj = nn.Linear(dim, hidden)
        self.query = nn.Parameter(torch.zeros(hidden))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        nn.init.zeros_(self.query)

    def weights(self, views: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        logits = torch.tanh(self.proj(views)) @ self.query  # [V, N]
        return torch.softmax(logits.T + torch.nan_to_num(similarity, nan=0.0) / self.tau, dim=1)


FUSIONS: dict[str, type[ViewFusion]] = {
    "sum": SumFusion,
    "mean": MeanFusion,
    "concat": ConcatFusion,
    "mlp": MLPFusion,
    "sa": SimilarityAttentionFusion,
    "attention": LearnableAttentionFusion,
}


def build_fusion(method: str, n_views: int, dim: int, tau: float = 0.1) -> ViewFusion:
    """A fusion layer by name: sum, mean, concat, mlp, sa, attention."""
    key = method.lower()
    if key not in FUSIONS:
        raise ConfigError(f"unknown fusion {method!r}; choose one of {', '.join(FUSIONS)}")
    cls = FUSIONS[key]
    if cls in (SimilarityAttentionFusion, LearnableAttentionFusion):
        return cls(n_views, dim, tau=tau)
    return cls(n_views, dim)


def fuse_views(views: np.ndarray, similarity: np.ndarray, method: str = "sa", tau: float = 0.1) -> np.ndarray:
    """Offline fusion with a parameter-free method (sum, mean, concat, sa) -> float32 [N, out_dim]."""
    fusion = build_fusion(method, views.shape[0], views.shape[2], tau)
    if fusion.trainable:
        raise ConfigError(f"fusion {method!r} has weights and must be trained with the recommender, not applied offline")
    with torch.no_grad():
        out = fusion(torch.from_numpy(np.array(views, dtype=np.float32)), torch.from_numpy(np.array(similarity, dtype=np.float32)))
    return out.numpy().astype(np.float32)
