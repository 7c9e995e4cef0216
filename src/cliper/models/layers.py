"""Small composable layers shared by graph recommenders."""

from __future__ import annotations

import torch
from torch import nn

from cliper.graphs.adjacency import layer_sum


class LightGCNPropagation(nn.Module):
    """LightGCN propagation (He et al., SIGIR 2020, Eq. 8-9): mean of E, AE, ..., A^L E.

    ``adjacency`` is the normalised (users + items) matrix (a :class:`SparseGraph`
    or torch sparse tensor); no weights, no non-linearity.
    """

    def __init__(self, n_layers: int):
        super().__init__()
        if n_layers < 0:
            raise ValueError("n_layers must be >= 0")
        self.n_layers = n_layers

    def forward(self, adjacency, embeddings: torch.Tensor) -> torch.Tensor:
        # one autograd node for all layers (cliper.graphs.adjacency.layer_sum): same values
        return layer_sum(adjacency, embeddings, self.n_layers, mean=True)

    def extra_repr(self) -> str:
        return f"n_layers={self.n_layers}"


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking loss, -mean log sigmoid(pos - neg) (Rendle et al., UAI 2009)."""
    return -torch.nn.functional.logsigmoid(pos_scores - neg_scores).mean()


def l2_reg(*tensors: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of half the squared L2 norm of the given embedding rows."""
    batch = tensors[0].shape[0]
    return sum(t.pow(2).sum() for t in tensors) / (2.0 * batch)
