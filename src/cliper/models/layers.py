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


class KeptRows:
    """Row buffers a model keeps between training batches, one per key.

    A batch's gathered or multiplied rows (VBPR's feature rows, SLMRec's sparse-product result)
    are 50 MB and more: over glibc's 32 MiB mmap threshold a fresh tensor is page-faulted in on
    every batch. A buffer is reused while it is large enough (1/16 of slack, at most
    ``max_rows``); the product that fills it saves it for backward, so autograd's in-place check
    refuses a backward after a later batch overwrote it. ``clear()`` when scoring starts.
    """

    def __init__(self):
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, key: str, n: int, like: torch.Tensor, max_rows: int) -> torch.Tensor:
        """``n`` rows of ``like``'s width, dtype and device, from the buffer kept under ``key``."""
        buf = self._buffers.get(key)
        if (buf is None or buf.shape[0] < n or buf.shape[1:] != like.shape[1:] or buf.dtype != like.dtype
                or buf.device != like.device):
            buf = self._buffers[key] = like.new_empty((min(max_rows, n + n // 16), *like.shape[1:]))
        return buf[:n]

    def clear(self) -> None:
        self._buffers.clear()


class CastCopy:
    """A fixed tensor in another dtype, cast once and reused while the tensor (the same object,
    its in-place version) and the dtype stay the same.

    Autocast casts a non-parameter input on every call (Baby's 4096-d image table: 115 MB read,
    58 MB written per batch); MMGCN's projected features and VBPR's gathered rows take the cast
    copy instead. The old copy is freed before the new one is made.
    """

    def __init__(self):
        self._key: tuple | None = None
        self._copy: torch.Tensor | None = None

    def get(self, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        key = self._key
        if key is None or key[0] is not tensor or key[1] != tensor._version or key[2] != dtype:
            self._copy = None
            self._copy = tensor.detach().to(dtype)
            self._key = (tensor, tensor._version, dtype)
        return self._copy


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


class _RowNormalize(torch.autograd.Function):
    """``F.normalize(x, dim=1)`` with a hand-written backward: dx = (dy - y <dy, y>) / max(|x|, eps).

    Autograd's generic form runs about twice as many elementwise passes over the rows (MMGCN's
    preference tables, GRCN's routing); the value and gradient are the same (up to rounding).
    """

    EPS = 1e-12  # F.normalize's default

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        denom = norm.clamp_min(_RowNormalize.EPS)
        y = x / denom  # the same division as F.normalize: bitwise-equal values
        ctx.save_for_backward(y, denom, norm > _RowNormalize.EPS)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        y, denom, live = ctx.saved_tensors
        dot = (grad * y).sum(1, keepdim=True).mul_(live)  # a clamped (near-zero) row: plain 1/eps scaling
        return torch.addcmul(grad, y, dot, value=-1.0).div_(denom)


def row_normalize(x: torch.Tensor) -> torch.Tensor:
    """``F.normalize(x, dim=1)``; through :class:`_RowNormalize` when a gradient is needed."""
    return _RowNormalize.apply(x) if torch.is_grad_enabled() and x.requires_grad else torch.nn.functional.normalize(x)
