"""Sparse graph operators and the normalised user-item adjacency.

LightGCN (He et al., SIGIR 2020, Eq. 7) normalises A = [[0, R], [R^T, 0]] as
D^-1/2 A D^-1/2. Propagation multiplies it with embeddings on every training
batch, so :class:`SparseGraph` keeps a CSR tensor and its transpose (the same object
when the matrix is symmetric) and gives autograd the transposed product directly.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch


def scipy_to_torch(m: sp.spmatrix) -> torch.Tensor:
    """A scipy sparse matrix as a torch sparse CSR float32 tensor (duplicates summed, indices sorted).

    Indices are int32 when they fit: MKL's sparse kernels take 32-bit indices, and int64
    ones are converted on every product (two ``_to_copy`` calls per product in a profile).
    """
    m = sp.csr_matrix(m, dtype=np.float32)
    m.sum_duplicates()
    m.sort_indices()
    return _csr_tensor(m)


def _csr_tensor(m: sp.spmatrix, transpose: bool = False) -> torch.Tensor:
    """A canonical scipy CSR (or, with ``transpose``, CSC read as the CSR of its transpose) as a torch
    CSR tensor, int32 indices where they fit; arrays already of the right dtype are shared, not copied."""
    shape = m.shape[::-1] if transpose else m.shape
    index = np.int32 if max(m.nnz, *shape) < 2**31 - 1 else np.int64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(index, copy=False)),
                                       torch.from_numpy(m.indices.astype(index, copy=False)),
                                       torch.from_numpy(np.asarray(m.data, dtype=np.float32)), size=shape)


def sparse_mm(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``a @ x`` for a sparse CSR ``a`` and a dense 1-D or 2-D ``x``, without autograd.

    ``torch.addmm(out, a, x, beta=0, out=out)`` runs the same kernel as ``a @ x`` (equal
    results bit for bit) but skips the zero-filled temporary and the two copies ``a @ x``
    makes of its result: on the Baby graph at one thread 2.3 ms instead of 4 to 10 ms on a
    lightly loaded machine (1.3x on a saturated one, where memory bandwidth bounds both). ``x`` is cast to
    the matrix's dtype (an ``out=`` call is not autocast, e.g. a bf16 ``x`` under autocast).
    """
    if a.layout != torch.sparse_csr:
        return a @ x
    vector = x.dim() == 1
    x2 = (x.unsqueeze(1) if vector else x).to(a.dtype).contiguous()
    out = x2.new_empty((a.shape[0], x2.shape[1]))
    torch.addmm(out, a, x2, beta=0, out=out)
    return out.squeeze(1) if vector else out


def bag_mm(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``a @ x`` for a sparse CSR ``a`` and a dense 1-D or 2-D ``x``, without autograd, as ``embedding_bag``
    (one bag per row, the non-zeros as per-sample weights, sum mode).

    On CPU this is FBGEMM's generated gather-scale-add kernel: 2.3 to 3.4x MKL's CSR product
    (:func:`sparse_mm`) at 64 columns on this machine at one thread (Baby graph, 2 ms against 5 to
    6.6 ms), 1.4x at 16 columns, 3x at 128. Each row sums its non-zeros in ascending column order, one
    row per thread, so results are the same at any thread count and differ from MKL's by float
    rounding only (about 4e-7 on the Baby graph).
    """
    vector = x.dim() == 1
    # detached: an input that requires grad (an autograd Function's input keeps the flag) would send
    # embedding_bag down its training path, which also builds the backward's index maps (1.8x slower)
    x2 = (x.unsqueeze(1) if vector else x).detach().to(a.dtype).contiguous()
    with torch.autocast(x2.device.type, enabled=False):
        # torch.embedding_bag, not F.embedding_bag: the same op without its Python-side checks
        out = torch.embedding_bag(x2, a.col_indices(), a.crow_indices(), False, 0, False, a.values(), True)[0]
    return out.squeeze(1) if vector else out


KERNELS = {"mkl": sparse_mm, "bag": bag_mm}


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor, mm) -> torch.Tensor:  # type: ignore[override]
        ctx.a_t, ctx.mm = a_t, mm
        return mm(a, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, None, ctx.mm(ctx.a_t, grad), None


class SparseGraph:
    """A fixed sparse matrix usable as ``graph @ dense`` with a cheap backward pass.

    Stored as CSR with int32 indices and multiplied by :func:`sparse_mm` (faster than
    COO at every size measured, 100 to 240k non-zeros), or with ``kernel="bag"`` by
    :func:`bag_mm` (faster again, different float rounding: opt-in, so a model's numbers change
    only when it asks); the transpose is kept so the backward pass is one more forward-style product.
    """

    def __init__(self, matrix: sp.spmatrix, symmetric: bool = False, kernel: str = "mkl"):
        if kernel not in KERNELS:
            raise ValueError(f"unknown sparse kernel {kernel!r}; expected one of {sorted(KERNELS)}")
        self.shape = tuple(matrix.shape)
        self.nnz = int(matrix.nnz)
        self.kernel = kernel
        self.matrix = scipy_to_torch(matrix)
        self.matrix_t = self.matrix if symmetric else scipy_to_torch(sp.csr_matrix(matrix).T)

    def row_block(self, rows: torch.Tensor, transpose: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """CSR tensors of ``A[rows]`` and, with ``transpose``, of ``A[rows]^T`` ([N, len(rows)]); CPU only.

        Sliced with scipy on views of the CSR arrays (no copy of the matrix); the transpose is
        scipy's linear-time CSR-to-CSC conversion, whose entries come out in ascending row order.
        """
        a = self.matrix
        view = sp.csr_matrix((a.values().numpy(), a.col_indices().numpy(), a.crow_indices().numpy()),
                             shape=self.shape, copy=False)
        block = view[rows.numpy()]
        return _csr_tensor(block), (_csr_tensor(block.tocsc(), transpose=True) if transpose else None)

    def to(self, device: torch.device | str) -> "SparseGraph":
        same = self.matrix_t is self.matrix
        self.matrix = self.matrix.to(device)
        self.matrix_t = self.matrix if same else self.matrix_t.to(device)
        return self

    def __deepcopy__(self, memo: dict) -> "SparseGraph":
        # torch cannot deepcopy a CSR tensor (no storage access); a clone of each part is the copy
        new = object.__new__(type(self))
        new.shape, new.nnz, new.kernel = self.shape, self.nnz, self.kernel
        new.matrix = self.matrix.clone()
        new.matrix_t = new.matrix if self.matrix_t is self.matrix else self.matrix_t.clone()
        memo[id(self)] = new
        return new

    @property
    def mm(self):
        """The product function of ``kernel`` (``mm(csr, dense)``, no autograd)."""
        return KERNELS[self.kernel]

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        # always fp32, also under train.precision=bf16/fp16 autocast: sparse CSR kernels have no
        # bf16 CPU implementation, and propagation sums are where low precision hurts most
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(self.matrix.dtype)
            if torch.is_grad_enabled() and x.requires_grad:
                return _SpMM.apply(self.matrix, self.matrix_t, x, self.mm)
            return self.mm(self.matrix, x)

    def __repr__(self) -> str:
        kernel = "" if self.kernel == "mkl" else f", kernel={self.kernel!r}"
        return f"SparseGraph(shape={self.shape}, nnz={self.nnz}{kernel})"


def _layer_sum(mm, a: torch.Tensor, x: torch.Tensor, n_layers: int) -> torch.Tensor:
    """x + a x + ... + a^L x (products by ``mm``), each term added in place into one buffer, in that order."""
    total = x.clone()
    layer = x
    for _ in range(n_layers):
        layer = mm(a, layer)
        total += layer
    return total


class _LayerSum(torch.autograd.Function):
    """sum_k A^k x (divided by L + 1 when ``mean``) as one autograd node.

    The backward is the same sum with A^T in Horner form, g + A^T (g + A^T (g + ...)),
    which is exactly the order autograd accumulates the plain per-layer loop in, so the
    gradients equal the loop's bit for bit while the per-layer temporaries and graph
    nodes are gone.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, graph: "SparseGraph", n_layers: int, mean: bool):  # type: ignore[override]
        ctx.graph, ctx.mm, ctx.n_layers, ctx.mean = graph, graph.mm, n_layers, mean  # the forward's kernel
        total = _layer_sum(graph.mm, graph.matrix, x, n_layers)
        return total.div_(n_layers + 1) if mean else total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        g = grad / (ctx.n_layers + 1) if ctx.mean else grad.contiguous()
        h = g
        for _ in range(ctx.n_layers):
            h = ctx.mm(ctx.graph.matrix_t, h)
            h += g
        return h, None, None, None


def _layer_sum_rows(graph: "SparseGraph", x: torch.Tensor, n_layers: int, rows: torch.Tensor,
                    block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows of x + A x + ... + A^L x, added in the order of :func:`_layer_sum`; rows of x), L >= 1."""
    x_rows = x.index_select(0, rows)
    out, layer = x_rows, x
    for k in range(n_layers):
        last = k == n_layers - 1
        layer = graph.mm(block if last else graph.matrix, layer)
        term = layer if last else layer.index_select(0, rows)
        out = out + term if k == 0 else out.add_(term)  # the first sum is a new tensor: x_rows is returned
    return out, x_rows


class _LayerSumRows(torch.autograd.Function):
    """Rows ``rows`` of ``sum_k A^k x``, and of ``x`` itself, as one autograd node; the last product
    is taken for those rows only.

    Forward: layers 1..L-1 in full, then ``A[rows] @ A^(L-1) x``. Backward, for the gradient g of
    the rows scattered into s (zero elsewhere): ``A^T s`` is ``A[rows]^T g`` (the block's
    transpose: the rows' non-zeros only), then the full Horner steps h = A^T h + s, where ``+ s``
    is an ``index_add_`` of g into the rows (no full-size s, no full-size add); the gradient of
    the input rows (a penalty on the layer-0 embeddings) is added to the last step's g, so it
    needs no buffer or pass of its own. The values equal :class:`_LayerSum` followed by ``index_select``
    bit for bit (the same rows of the same kernel); the gradients sum the same terms, which the
    full product interleaves with exact zeros, so they agree up to float rounding (the kernel's
    accumulation order; about 1e-7 in the tests).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, graph: "SparseGraph", n_layers: int, rows: torch.Tensor, mean: bool):  # type: ignore[override]
        block, block_t = graph.row_block(rows, transpose=True)
        ctx.graph, ctx.block_t, ctx.n_layers, ctx.mean, ctx.shape = graph, block_t, n_layers, mean, x.shape
        ctx.mm = graph.mm
        ctx.save_for_backward(rows)
        ctx.set_materialize_grads(False)
        out, x_rows = _layer_sum_rows(graph, x, n_layers, rows, block)
        return (out.div_(n_layers + 1) if mean else out), x_rows

    @staticmethod
    def backward(ctx, grad: torch.Tensor | None, grad_x_rows: torch.Tensor | None):  # type: ignore[override]
        (rows,) = ctx.saved_tensors
        if grad is None:
            h = grad_x_rows.new_zeros(ctx.shape)
        else:
            g = grad / (ctx.n_layers + 1) if ctx.mean else grad.contiguous()
            mm = ctx.mm
            h = mm(ctx.block_t, g)
            for _ in range(ctx.n_layers - 1):
                h.index_add_(0, rows, g)  # + s; sums repeated rows, as the full path's index_select backward does
                h = mm(ctx.graph.matrix_t, h)
            # the last + s and the input rows' gradient in one pass: h + (g + grad_x_rows)
            h.index_add_(0, rows, g if grad_x_rows is None else g + grad_x_rows)
            return h, None, None, None, None
        h.index_add_(0, rows, grad_x_rows)
        return h, None, None, None, None


def propagate_rows(graph, x: torch.Tensor, n_layers: int, rows: torch.Tensor, mean: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(layer_sum(graph, x, n_layers, mean)[rows], x[rows])``, cheaper (``rows`` sorted and distinct
    is cheapest).

    A training batch needs the propagated embeddings of its own users and items only (and, for an
    L2 penalty, their layer-0 rows): the last layer's product is taken for those rows (about a
    third of the non-zeros on Baby at batch size 2048) and its backward touches only their
    non-zeros. A graph that is not a CPU :class:`SparseGraph`, and ``n_layers == 0``, take the full
    path and select the rows.
    """
    if not isinstance(graph, SparseGraph) or n_layers == 0 or graph.matrix.device.type != "cpu":
        return layer_sum(graph, x, n_layers, mean).index_select(0, rows), x.index_select(0, rows)
    with torch.autocast(x.device.type, enabled=False):
        x = x.to(graph.matrix.dtype)
        if torch.is_grad_enabled() and x.requires_grad:
            return _LayerSumRows.apply(x, graph, n_layers, rows, mean)
        out, x_rows = _layer_sum_rows(graph, x, n_layers, rows, graph.row_block(rows)[0])
        return (out.div_(n_layers + 1) if mean else out), x_rows


def layer_sum(graph, x: torch.Tensor, n_layers: int, mean: bool = False) -> torch.Tensor:
    """``x + A x + ... + A^L x`` (``mean``: divided by L + 1, LightGCN's layer average).

    Equal to the plain loop ``layer = graph @ layer; out = out + layer`` (values and
    gradients, bit for bit, for a :class:`SparseGraph`) in one autograd node; any other
    ``graph`` (a torch sparse tensor) runs that loop.
    """
    if n_layers < 0:
        raise ValueError("n_layers must be >= 0")
    if not isinstance(graph, SparseGraph):
        out, layer = x, x
        for _ in range(n_layers):
            layer = graph @ layer
            out = out + layer
        return out / (n_layers + 1) if mean else out
    if torch.is_grad_enabled() and x.requires_grad:
        return _LayerSum.apply(x, graph, n_layers, mean)
    total = _layer_sum(graph.mm, graph.matrix, x, n_layers)
    return total.div_(n_layers + 1) if mean else total


class BipartiteGraph(SparseGraph):
    """The graph of :func:`normalized_bipartite` that also multiplies the user and item halves of an
    embedding table in place, without concatenating them.

    A = [[0, R], [R^T, 0]] (R the normalised user-item block), so A [x_u; x_i] = [R x_i; R^T x_u]:
    ``users_part`` is A's user rows with their column indices made item indices (``- n_users``),
    ``items_part`` its item rows (indices into the user table). A product by the halves reads the same
    non-zeros in the same order as the whole matrix's product, so with the ``bag`` kernel it equals
    that product's rows bit for bit.
    """

    def __init__(self, train: sp.csr_matrix, kernel: str = "mkl"):
        super().__init__(normalized_bipartite(train), symmetric=True, kernel=kernel)
        self.n_users = int(train.shape[0])
        self._split()

    def _split(self) -> None:
        self.users_part, self.items_part = self._halves(self.matrix, self.n_users)

    def _halves(self, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A CSR block of A's rows whose first ``k`` are user rows, as (those ``k`` rows, a block of R
        with item column indices; the rest, a block of R^T with user column indices)."""
        crow, col, val = rows.crow_indices(), rows.col_indices(), rows.values()
        nu = self.n_users
        cut = int(crow[k])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            of_users = torch.sparse_csr_tensor(crow[: k + 1], col[:cut] - nu, val[:cut], size=(k, self.shape[0] - nu))
            of_items = torch.sparse_csr_tensor(crow[k:] - cut, col[cut:], val[cut:], size=(rows.shape[0] - k, nu))
        return of_users, of_items

    def row_blocks(self, users: torch.Tensor, items: torch.Tensor, transpose: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """CSR tensors of ``R[users]`` (item indices), ``R^T[items]`` (user indices) and, with ``transpose``,
        ``A[rows]^T`` ([N, len(rows)], rows = users then items + n_users); one scipy slice of A."""
        block, block_t = self.row_block(torch.cat([users, items + self.n_users]), transpose)
        return (*self._halves(block, users.numel()), block_t)

    def to(self, device: torch.device | str) -> "BipartiteGraph":
        super().to(device)
        self._split()
        return self

    def __deepcopy__(self, memo: dict) -> "BipartiteGraph":
        new = super().__deepcopy__(memo)
        new.n_users = self.n_users
        new._split()
        return new


def _bipartite_rows(graph: BipartiteGraph, x_u: torch.Tensor, x_i: torch.Tensor, n_layers: int,
                    users: torch.Tensor, items: torch.Tensor, of_users: torch.Tensor, of_items: torch.Tensor,
                    mean: bool):
    """:func:`_layer_sum_rows` by halves: layers 1..L-1 in full, the last for the rows' blocks
    (``mean``: the sums divided by L + 1)."""
    mm = graph.mm
    xu_rows, xi_rows = x_u.index_select(0, users), x_i.index_select(0, items)
    out_u, out_i, layer_u, layer_i = xu_rows, xi_rows, x_u, x_i
    for k in range(n_layers):
        if k == n_layers - 1:
            term_u, term_i = mm(of_users, layer_i), mm(of_items, layer_u)
        else:
            layer_u, layer_i = mm(graph.users_part, layer_i), mm(graph.items_part, layer_u)
            term_u, term_i = layer_u.index_select(0, users), layer_i.index_select(0, items)
        out_u = out_u + term_u if k == 0 else out_u.add_(term_u)
        out_i = out_i + term_i if k == 0 else out_i.add_(term_i)
    if mean:  # n_layers >= 1 here, so out_* are new tensors, not the input rows
        out_u.div_(n_layers + 1)
        out_i.div_(n_layers + 1)
    return out_u, out_i, xu_rows, xi_rows


class _BipartiteRows(torch.autograd.Function):
    """:class:`_LayerSumRows` on a :class:`BipartiteGraph` whose input comes as (user, item) halves:
    the same products and adds, each split at the user/item boundary, so values and gradients equal
    :class:`_LayerSumRows`' on the concatenated table bit for bit (``bag`` kernel), and the user and
    item gradients come out as two tensors (no concatenated table, no full-size copy)."""

    @staticmethod
    def forward(ctx, x_u, x_i, graph: BipartiteGraph, n_layers: int, users, items, mean: bool):  # type: ignore[override]
        of_users, of_items, block_t = graph.row_blocks(users, items, transpose=True)
        ctx.graph, ctx.mm, ctx.block_t, ctx.n_layers, ctx.mean = graph, graph.mm, block_t, n_layers, mean
        ctx.save_for_backward(users, items)
        return _bipartite_rows(graph, x_u, x_i, n_layers, users, items, of_users, of_items, mean)

    @staticmethod
    def backward(ctx, grad_u, grad_i, grad_xu_rows, grad_xi_rows):  # type: ignore[override]
        users, items = ctx.saved_tensors
        graph, mm, scale = ctx.graph, ctx.mm, ctx.n_layers + 1
        g_u = grad_u / scale if ctx.mean else grad_u.contiguous()
        g_i = grad_i / scale if ctx.mean else grad_i.contiguous()
        h = mm(ctx.block_t, torch.cat([g_u, g_i]))  # A^T s: the rows' non-zeros only
        h_u, h_i = h[: graph.n_users], h[graph.n_users :]
        for _ in range(ctx.n_layers - 1):
            h_u.index_add_(0, users, g_u)
            h_i.index_add_(0, items, g_i)
            h_u, h_i = mm(graph.users_part, h_i), mm(graph.items_part, h_u)  # A symmetric: A^T = A
        h_u.index_add_(0, users, g_u + grad_xu_rows)
        h_i.index_add_(0, items, g_i + grad_xi_rows)
        return h_u, h_i, None, None, None, None, None


def propagate_bipartite_rows(graph: BipartiteGraph, x_u: torch.Tensor, x_i: torch.Tensor, n_layers: int,
                             users: torch.Tensor, items: torch.Tensor, mean: bool = False):
    """``(P[users], P[n_users + items], x_u[users], x_i[items])`` for ``P = layer_sum(graph, cat(x_u, x_i),
    n_layers, mean)``: :func:`propagate_rows` for a table kept as user and item halves (LightGCN's two
    embedding tables), without their concatenation. ``users`` and ``items`` (item indices) sorted and
    distinct are cheapest. ``n_layers == 0`` and a graph off the CPU take the full path."""
    if n_layers == 0 or graph.matrix.device.type != "cpu":
        full = layer_sum(graph, torch.cat([x_u, x_i]), n_layers, mean)
        return (full[: graph.n_users].index_select(0, users), full[graph.n_users :].index_select(0, items),
                x_u.index_select(0, users), x_i.index_select(0, items))
    with torch.autocast(x_u.device.type, enabled=False):
        x_u, x_i = x_u.to(graph.matrix.dtype), x_i.to(graph.matrix.dtype)
        if torch.is_grad_enabled() and (x_u.requires_grad or x_i.requires_grad):
            return _BipartiteRows.apply(x_u, x_i, graph, n_layers, users, items, mean)
        of_users, of_items, _ = graph.row_blocks(users, items)
        return _bipartite_rows(graph, x_u, x_i, n_layers, users, items, of_users, of_items, mean)


def normalized_bipartite(train: sp.csr_matrix, add_self_loops: bool = False) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 for A = [[0, R], [R^T, 0]] over (users + items) nodes.

    Nodes with degree 0 get a zero row (no division by zero).
    """
    n_users, n_items = train.shape
    r = sp.csr_matrix(train, dtype=np.float32)
    a = sp.bmat(
        [
            [sp.csr_matrix((n_users, n_users), dtype=np.float32), r],
            [r.T, sp.csr_matrix((n_items, n_items), dtype=np.float32)],
        ],
        format="csr",
    )
    if add_self_loops:
        a = a + sp.eye(a.shape[0], dtype=np.float32, format="csr")
    return sym_normalize(a)


def sym_normalize(a: sp.spmatrix) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 with zero rows for isolated nodes."""
    a = sp.csr_matrix(a, dtype=np.float32)
    deg = np.asarray(a.sum(1)).ravel()
    with np.errstate(divide="ignore"):
        d = np.where(deg > 0, deg**-0.5, 0.0).astype(np.float32)
    dm = sp.diags(d)
    return sp.csr_matrix(dm @ a @ dm)


def bipartite_graph(train: sp.csr_matrix, add_self_loops: bool = False, kernel: str = "mkl") -> SparseGraph:
    """The normalised user-item adjacency as a symmetric :class:`SparseGraph`."""
    return SparseGraph(normalized_bipartite(train, add_self_loops), symmetric=True, kernel=kernel)
