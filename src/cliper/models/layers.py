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
    return l2_penalty("squared", *tensors)


REG_FORMS = ("squared", "norm", "mean")


def l2_penalty(form: str, *tensors: torch.Tensor) -> torch.Tensor:
    """The embedding penalty every model's ``reg_weight`` multiplies, in the form ``model.reg_form`` names.

    One function so the same ``reg_weight`` means the same strength across models:

    - ``squared``: sum_t ||t||^2 / (2 B) (RecBole's L2Loss / batch; LATTICE, MGCN, SMORE code);
    - ``norm``: sum_t ||t||_F / B, the unsquared Frobenius norm (MMRec's ``EmbLoss``: BPR, VBPR,
      LightGCN, BM3, LGMRec);
    - ``mean``: sum_t mean(t^2) (MMGCN, GRCN, DualGNN, DRAGON code).

    B is the row count of the LAST tensor, as in ``EmbLoss`` (the batch size for batch rows; BM3
    passes whole tables and so divides by the item count).
    """
    if not tensors:
        raise ValueError("l2_penalty needs at least one tensor")
    if form == "squared":
        return sum(t.pow(2).sum() for t in tensors) / (2.0 * tensors[-1].shape[0])
    if form == "norm":
        return sum(torch.linalg.vector_norm(t) for t in tensors) / tensors[-1].shape[0]
    if form == "mean":
        return sum(t.pow(2).mean() for t in tensors)
    raise ValueError(f"unknown reg_form {form!r}; expected one of {list(REG_FORMS)}")
