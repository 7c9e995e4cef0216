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


def penalty_factors(form: str, sums: tuple[torch.Tensor, ...], b: int, d: int):
    """(penalty, per-tensor gradient factors) of :func:`l2_penalty` from each tensor's sum of squares
    (B rows of d columns each): d penalty / d t = factor_t * t. For hand-written backwards
    (:func:`pair_rows_loss`, LightGCN's batch loss)."""
    if form == "norm":  # sum_t ||t||_F / B; d||t||/dt = t / ||t|| (0 at t = 0, as autograd's norm)
        return (sum(s.sqrt() for s in sums) / b,
                [torch.where(s > 0, 1 / (b * s.sqrt()), 0.0) for s in sums])
    if form == "squared":  # sum_t ||t||^2 / 2B
        return sum(sums) / (2.0 * b), [sums[0].new_tensor(1.0 / b)] * len(sums)
    if form == "mean":  # sum_t mean(t^2) = sum_t ||t||^2 / (B d)
        return sum(s / (b * d) for s in sums), [sums[0].new_tensor(2.0 / (b * d))] * len(sums)
    raise ValueError(f"unknown reg_form {form!r}; expected one of {list(REG_FORMS)}")


class _PairRowsLoss(torch.autograd.Function):
    """:func:`pair_rows_loss` as one autograd node.

    Autograd's form of BPR plus the penalty is about twenty small nodes per batch (two lookups,
    the concatenation and the split of the item rows, three norms with their masked backward
    divisions, the products and sums of the scores); here the forward keeps the gathered rows and
    the backward writes each row's whole gradient (its BPR term plus its penalty term) with one
    ``index_add_`` per table. Same maths; sums taken in another order (float rounding).
    """

    @staticmethod
    def forward(ctx, users_table, item_rows, users, where, form: str, reg_weight: float):  # type: ignore[override]
        b = users.numel()
        u = users_table.index_select(0, users)
        pn = item_rows.index_select(0, where)
        p, q = pn[:b], pn[b:]
        diff = (u * p).sum(1) - (u * q).sum(1)
        loss = -torch.nn.functional.logsigmoid(diff).mean()
        reg, factors = penalty_factors(form, (u.pow(2).sum(), p.pow(2).sum(), q.pow(2).sum()), b, u.shape[1])
        ctx.save_for_backward(u, pn, diff, users, where)
        ctx.factors = [reg_weight * f for f in factors]
        ctx.shapes = (users_table.shape, item_rows.shape)
        return loss + reg_weight * reg

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        u, pn, diff, users, where = ctx.saved_tensors
        b = users.numel()
        f_u, f_p, f_q = (grad * f for f in ctx.factors)
        c = (torch.sigmoid(-diff) * (-grad / b)).unsqueeze(1)  # d(-mean logsigmoid(diff)) / d diff
        p, q = pn[:b], pn[b:]
        g_users = g_items = None
        if ctx.needs_input_grad[0]:
            rows = torch.sub(p, q).mul_(c).add_(u * f_u)
            g_users = u.new_zeros(ctx.shapes[0]).index_add_(0, users, rows)
        if ctx.needs_input_grad[1]:
            g_pn = torch.empty_like(pn)
            torch.mul(u, c, out=g_pn[:b]).add_(p * f_p)
            torch.mul(u, c.neg(), out=g_pn[b:]).add_(q * f_q)
            g_items = pn.new_zeros(ctx.shapes[1]).index_add_(0, where, g_pn)
        return g_users, g_items, None, None, None, None


def pair_rows_loss(users_table: torch.Tensor, item_rows: torch.Tensor, users: torch.Tensor, where: torch.Tensor,
                   form: str, reg_weight: float) -> torch.Tensor:
    """``bpr_loss(<u, p>, <u, q>) + reg_weight * l2_penalty(form, u, p, q)`` with u = users_table[users],
    p = item_rows[where[:B]], q = item_rows[where[B:]] (B = len(users)): a matrix-factorisation style
    BPR batch read from a user table and a block of item rows (BPR's item table; VBPR's distinct
    items' [gamma_i ; E f_i]), in one autograd node (:class:`_PairRowsLoss`)."""
    if where.numel() != 2 * users.numel():
        raise ValueError(f"where needs 2 x {users.numel()} item positions (positives, then negatives), got {where.numel()}")
    if users_table.dtype != item_rows.dtype:
        u = users_table.index_select(0, users)
        p, q = item_rows.index_select(0, where).split(users.numel())
        return bpr_loss((u * p).sum(1), (u * q).sum(1)) + reg_weight * l2_penalty(form, u, p, q)
    return _PairRowsLoss.apply(users_table, item_rows, users, where, form, float(reg_weight))


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
