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
adjacency D^-1 A, not an edge-list scatter over 2|E| gathered message rows. The operator is
bipartite, so users and items are propagated as two blocks (A_ui x_i, A_iu x_u): no [U+I, d]
concatenation or its backward copies; each block multiplies A (x W_1) or (A x) W_1, whichever
runs the dense product on fewer rows, and on CPU every sparse product runs as embedding_bag
(:class:`BipartiteBlock`). Constants are made once: an unprojected frozen modality's
normalisation (MMRec's text), and with fixed preference tables (the default) their
normalisation, their layer-1 aggregate and their L2 term. LeakyReLU runs in place on fresh
products, the dense layer products run by oneDNN's fp32 kernel on CPU (fused_ops.linear) and the
frozen image features are cast to bf16 once under autocast. In training the last layer is computed
for the batch's user and item rows only (the loss reads no other row), and every earlier user layer
runs aggregate, LeakyReLU and its W_2 product in one autograd Function whose [U, w] tensors live in
buffers kept between batches (:class:`_AggregateCombine`; a backward after a later forward is
refused). Same maths as the stacked form (equal up to float rounding; docs/backbones/mmgcn.md, "Speed").

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

from cliper.graphs.adjacency import SparseGraph, bag_mm, sparse_mm
from cliper.models import fused_ops
from cliper.models.base import Batch, ModelContext, ModelParams, Recommender, RegForm
from cliper.models.fused_ops import linear as fused_linear
from cliper.models.layers import CastCopy, KeptRows, bpr_loss, l2_penalty, row_normalize
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


def neighbour_blocks(train: sp.csr_matrix, aggregation: str) -> tuple[BipartiteBlock, BipartiteBlock]:
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
    return BipartiteBlock(r), BipartiteBlock(r_t)


def _sparse_product(matrix: torch.Tensor, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``matrix @ x`` in float32 without autograd: ``embedding_bag`` on CPU, the CSR product elsewhere
    or into ``out`` (MKL's kernel on CPU)."""
    if out is not None and matrix.layout == torch.sparse_csr:
        torch.addmm(out, matrix, x.to(torch.float32).contiguous(), beta=0, out=out)
        return out
    if x.device.type == "cpu" and matrix.layout == torch.sparse_csr:
        got = bag_mm(matrix, x)
    else:
        got = sparse_mm(matrix, x.to(torch.float32))
    return got if out is None else out.copy_(got)


class BipartiteBlock:
    """One block of the bipartite operator (targets x sources), multiplied without autograd by
    ``embedding_bag`` on CPU (adjacency.bag_mm; any other device: the CSR product).

    At one thread on Baby, ``bag_mm`` ran every product of MMGCN's two blocks faster than the
    kernels used before (MKL's CSR gather, scipy's CSC scatter for the direction into the smaller
    table): 0.5-0.7 against 1.7-2.1 ms at width 64, 2.5-6.1 against 3.8-9.0 at 256, 4.5-6.8 against
    5.5-7.8 at 384. Its rows sum their sources in ascending order (results differ by float rounding).
    """

    def __init__(self, matrix: sp.csr_matrix):
        self.graph = SparseGraph(matrix)  # the CSR tensor and its transpose, any device
        self.shape = self.graph.shape
        self.rows_source = sp.csr_matrix(matrix)  # on the CPU whatever the device: rows() slices it

    def to(self, device: torch.device | str) -> "BipartiteBlock":
        self.graph = self.graph.to(device)
        return self

    def product(self, x: torch.Tensor, transpose: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
        """``A x`` (``A^T x`` when ``transpose``) without autograd, always float32 (as SparseGraph).

        With ``out`` the product is MKL's CSR kernel writing into it (``embedding_bag`` has no
        in-place form): :class:`_AggregateCombine`'s kept buffer."""
        return _sparse_product(self.graph.matrix_t if transpose else self.graph.matrix, x, out)

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _BlockProduct.apply(self, x)
        return self.product(x)

    def rows(self, ids: torch.Tensor) -> "BipartiteBlock":
        """``A[ids]`` (ids may repeat), a block of its own on ``ids``' device.

        MMGCN's loss reads the last layer's rows of the batch only (2,048 of Baby's 19,445 users,
        4,096 item rows of 7,050); the other rows of that layer are never used, so training does not
        compute them. Sliced by scipy from the CPU copy, so any device works.
        """
        return BipartiteBlock(self.rows_source[ids.cpu().numpy()]).to(ids.device)


class _BlockProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, block: BipartiteBlock, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.block = block
        return block.product(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, ctx.block.product(grad, transpose=True)


class Scratch:
    """One flat buffer lent as a tensor shaped like any requested one (layers of every width share
    it: each backward is done with it before the next one starts)."""

    def __init__(self):
        self._flat: torch.Tensor | None = None

    def get(self, like: torch.Tensor) -> torch.Tensor:
        n = like.numel()
        flat = self._flat
        if flat is None or flat.numel() < n or flat.dtype != like.dtype or flat.device != like.device:
            flat = self._flat = like.new_empty(n)
        return flat[:n].view(like.shape)

    def clear(self) -> None:
        self._flat = None


class _AggregateCombine(torch.autograd.Function):
    """``bias + LeakyReLU(A p) w_h`` with ``A p`` written into a buffer kept between batches
    (:class:`cliper.models.layers.KeptRows`) and its gradient into one :class:`Scratch` buffer
    shared by every layer.

    On Baby the text modality's first user layer ``A p`` is [19445 x 384], 30 MB: with its
    gradient and the LeakyReLU gradient, three fresh tensors per batch whose 2 MiB-aligned blocks
    pass glibc's 32 MiB mmap threshold, so they were mapped and faulted in again on every batch
    (650-3,800 faults and up to 65 ms of system time in a step). The backward runs autograd's own
    products (``grad w_h^T``, ``h^T grad``, the in-place LeakyReLU's backward on its result); the
    forward's ``h w_h`` is oneDNN's (float rounding). The saved buffer is overwritten by the next
    batch's forward, so a backward after a later forward is refused by autograd's in-place check.
    """

    @staticmethod
    def forward(ctx, p: torch.Tensor, w_h: torch.Tensor, bias: torch.Tensor, block: BipartiteBlock,  # type: ignore[override]
                slope: float, h: torch.Tensor, scratch: Scratch) -> torch.Tensor:
        block.product(p, out=h)
        F.leaky_relu_(h, slope)
        ctx.save_for_backward(h, w_h)
        ctx.block, ctx.slope, ctx.scratch = block, slope, scratch
        return fused_ops.matmul_nt(h, w_h.T.contiguous(), bias)  # oneDNN: 11 against MKL's 16 ms (text, Baby)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        h, w_h = ctx.saved_tensors
        need_p, need_w, need_b = ctx.needs_input_grad[:3]
        g_w = h.T.mm(grad) if need_w else None
        g_p = None
        if need_p:
            g_h = torch.mm(grad, w_h.T, out=ctx.scratch.get(h))
            torch.ops.aten.leaky_relu_backward.grad_input(g_h, h, ctx.slope, True, grad_input=g_h)
            g_p = ctx.block.product(g_h, transpose=True)
        return g_p, g_w, (grad.sum(0) if need_b else None), None, None, None, None


def _fused_users(p: torch.Tensor, w_h: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether :class:`_AggregateCombine` takes a user layer: fp32 CPU training outside autocast."""
    return (torch.is_grad_enabled() and bias is not None and p.device.type == "cpu" and p.dtype == torch.float32
            and w_h.dtype == torch.float32 and not torch.is_autocast_enabled("cpu"))


def _aggregate(block: BipartiteBlock, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``block @ (x @ w)``, multiplied in the order that runs the dense product on fewer rows.

    The operator is linear, so A (x W) = (A x) W; with more source rows than target rows
    (users -> items on Amazon data) aggregating first makes the [rows, w] x [w, w]
    product, and its two backward products, run over the targets only.
    """
    if block.shape[0] < block.shape[1]:
        return _times(block @ x, w)
    return block @ _times(x, w)


def project(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)``, by :func:`cliper.models.fused_ops.linear` (oneDNN's fp32 kernel)."""
    return fused_linear(x, layer.weight, layer.bias)


def _times(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w``, by :func:`cliper.models.fused_ops.linear` (``w`` is small: its transposed copy
    costs nothing next to the product)."""
    if x.device.type != "cpu" or torch.is_autocast_enabled("cpu") or fused_ops.onednn_unavailable():
        return x @ w
    return fused_linear(x, w.T.contiguous())


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
        self._user_key: tuple | None = None  # (preference, its version, block) the constants below come from
        self._user_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._cast = CastCopy()  # the frozen features in autocast's dtype
        self.kept = KeptRows()  # _AggregateCombine's A p per layer, kept between batches
        self.scratch = Scratch()  # its gradient buffer (MMGCN shares one between modalities)
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

    def _autocast_input(self, features: torch.Tensor) -> torch.Tensor:
        """Frozen features in autocast's dtype, cast once (autocast casts a non-parameter input on
        every call: 115 MB read, 58 MB written per batch for Baby's 4096-d image features)."""
        kind = features.device.type
        if features.requires_grad or not torch.is_autocast_enabled(kind):
            return features
        dtype = torch.get_autocast_dtype(kind)
        if features.dtype == dtype or not features.is_floating_point():
            return features
        return self._cast.get(features, dtype)

    def item_input(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised item rows of the layer-1 input: projected features, or the raw ones.

        Unprojected frozen features are normalised once and reused (a constant: no
        gradient, no per-batch normalisation); a trainable fusion's output is not cached.
        """
        if self.projection is not None:
            return row_normalize(project(self._autocast_input(features), self.projection))
        if features.requires_grad:
            return row_normalize(features)
        if self._item_source is not features or self._item_version != features._version:
            self._item_cache = F.normalize(features.detach())
            self._item_source, self._item_version = features, features._version
        return self._item_cache

    def user_input(self, g_iu: BipartiteBlock) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(normalised preference rows, their aggregate ``g_iu @ x_u`` when layer 1 aggregates first).

        A fixed preference table (MMRec's default) makes both constants: they are computed once
        and reused while the table (its in-place version) and the graph stay the same.
        """
        pref = self.preference
        first = g_iu.shape[0] < g_iu.shape[1]  # _aggregate's order: (A x_u) W_1
        if pref.requires_grad:
            xu = row_normalize(pref)
            return xu, (g_iu @ xu if first else None)
        key = self._user_key
        if key is None or key[0] is not pref or key[1] != pref._version or key[2] is not g_iu:
            with torch.no_grad():
                xu = F.normalize(pref)
                self._user_cache = (xu, g_iu @ xu if first else None)
            self._user_key = (pref, pref._version, g_iu)
        return self._user_cache

    def forward(self, blocks: tuple[BipartiteBlock, BipartiteBlock], features: torch.Tensor,
                id_users: torch.Tensor, id_items: torch.Tensor,
                batch_users: tuple[torch.Tensor, BipartiteBlock] | None = None,
                batch_items: tuple[torch.Tensor, BipartiteBlock] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(user rows, item rows) of the last layer; ``blocks`` from :func:`neighbour_blocks`.

        Equal to running the layers on ``x = normalize([preference; features])`` with the full
        operator; users and items are kept apart, so no gradient is computed for constant
        item rows and no [U+I, d] concatenation is made. With ``batch_users`` (rows, ``A_ui[rows]``)
        the last layer's user side is computed for those rows only, and the user rows returned are
        theirs; ``batch_items`` (rows, ``A_iu[rows]``) likewise for the items.
        """
        g_ui, g_iu = blocks
        last = len(self.conv) - 1
        xu, agg_u = self.user_input(g_iu)  # row-wise, so normalising the blocks apart is the same
        xi = self.item_input(features)
        slope = self.slope
        act = F.leaky_relu_  # in place on fresh products: their backward needs inputs, not outputs
        for layer, (w, lin, comb) in enumerate(zip(self.conv, self.linear, self.combine)):
            w_h = comb.weight[:, : w.shape[1]].T if self.concat else comb.weight.T
            rows = batch_users if layer == last else None
            fused = rows is None and g_ui.shape[0] >= g_ui.shape[1] and _fused_users(xi, w_h, comb.bias)
            if rows is not None:  # the batch's users only: xu and id_users become their rows
                hu = act(_aggregate(rows[1], xi, w), slope)
                xu_in, id_u = xu[rows[0]], id_users[rows[0]]
            elif fused:  # Eq. 1 for users, inside _AggregateCombine with its W_2 product
                p = _times(xi, w)
                z = _AggregateCombine.apply(p, w_h, comb.bias, g_ui, slope,
                                            self.kept.get(f"h{layer}", g_ui.shape[0], p, g_ui.shape[0]), self.scratch)
            else:
                hu = act(_aggregate(g_ui, xi, w), slope)  # Eq. 1: users aggregate their items' W_1 x_j
            item_rows = batch_items if layer == last else None
            if layer == 0 and agg_u is not None:  # ... items their users' (aggregated once)
                hi = act(_times(agg_u if item_rows is None else agg_u[item_rows[0]], w), slope)
            else:
                hi = act(_aggregate(g_iu if item_rows is None else item_rows[1], xu, w), slope)
            xi_in, id_i = (xi, id_items) if item_rows is None else (xi[item_rows[0]], id_items[item_rows[0]])
            if rows is None:
                xu_in, id_u = xu, id_users
            xhu = act(project(xu_in, lin), slope) + id_u  # Eq. 5
            xhi = act(project(xi_in, lin), slope) + id_i
            if self.concat:  # Eq. 6, W_2 [h ; x_hat] as two blocks of W_2 (no [N, w + d] copy)
                w_x = comb.weight[:, w.shape[1] :].T
                xu = act(z.addmm_(xhu, w_x) if fused else _two_products(comb.bias, hu, w_h, xhu, w_x), slope)
                xi = act(_two_products(comb.bias, hi, w_h, xhi, w_x), slope)
            else:
                xu = act(z.add_(xhu) if fused else comb(hu) + xhu, slope)  # Eq. 6, element-wise
                xi = act(comb(hi) + xhi, slope)
        return xu, xi


def _two_products(bias: torch.Tensor, a: torch.Tensor, w_a: torch.Tensor, b: torch.Tensor,
                  w_b: torch.Tensor) -> torch.Tensor:
    """``bias + a w_a + b w_b``; the second product accumulates in place (no copy of the first).

    The first product is the wide one ([N, 384] x [384, 64] in the text modality's first layer):
    oneDNN's (fused_ops.linear; 3.7 against MKL's 4.7 ms for Baby's items). Under autocast the
    first product is low precision and the in-place one would mix dtypes, so the out-of-place
    form is kept there.
    """
    if torch.is_autocast_enabled(a.device.type):
        return torch.addmm(torch.addmm(bias, a, w_a), b, w_b)
    return fused_linear(a, w_a.T.contiguous(), bias).addmm_(b, w_b)


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
        scratch = Scratch()
        for gcn in self.gcns.values():
            gcn.scratch = scratch
        g_ui, g_iu = neighbour_blocks(ctx.train.matrix, params.aggregation)
        self.blocks = (g_ui.to(ctx.device), g_iu.to(ctx.device))
        self._pref_penalty: tuple[list, torch.Tensor] | None = None

    def propagate(self, batch_users: torch.Tensor | None = None,
                  batch_items: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) representations; with ``batch_users`` / ``batch_items``, the rows of those
        users / items only, in their order (the last layer's other rows are not computed)."""
        id_u, id_i = self.id_embedding[: self.n_users], self.id_embedding[self.n_users :]

        def rows(ids: torch.Tensor | None, block: BipartiteBlock):
            return None if ids is None else (ids, block.rows(ids))

        u_rows, i_rows = rows(batch_users, self.blocks[0]), rows(batch_items, self.blocks[1])
        users, items = 0.0, 0.0
        for m in self.used:
            u, i = self.gcns[m](self.blocks, self.features.get(m), id_u, id_i, u_rows, i_rows)
            users, items = users + u, items + i
        return users / len(self.used), items / len(self.used)

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        n = batch.pos_items.shape[0]
        u, items = self.propagate(batch.users, torch.cat([batch.pos_items, batch.neg_items]))
        loss = bpr_loss((u * items[:n]).sum(1), (u * items[n:]).sum(1))
        ids = self.id_embedding
        pos, neg = ids[self.n_users + batch.pos_items], ids[self.n_users + batch.neg_items]
        f = self.params.reg_form
        reg = l2_penalty(f, ids[batch.users]) + 0.5 * l2_penalty(f, pos, neg)
        pref = self.preference_penalty()
        if pref is not None:  # a text-only MMGCN penalises no preference table by default
            reg = reg + pref
        return loss + self.params.reg_weight * reg

    def preference_penalty(self) -> torch.Tensor | None:
        """L2 of the penalised preference tables; a constant, computed once, while they are fixed buffers."""
        penalised = self.used if self.params.preference_penalty == "all" else [m for m in self.used if m == "image"]
        if not penalised:
            return None
        tables = [self.gcns[m].preference for m in penalised]
        if any(t.requires_grad for t in tables):
            return l2_penalty(self.params.reg_form, *tables)
        key = [(t, t._version) for t in tables]
        cached = self._pref_penalty
        if cached is None or len(cached[0]) != len(key) or any(
                a is not t or v != tv for (a, v), (t, tv) in zip(cached[0], key)):
            with torch.no_grad():
                self._pref_penalty = (key, l2_penalty(self.params.reg_form, *tables))
        return self._pref_penalty[1]

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        for gcn in self.gcns.values():  # training's kept buffers are not needed to score (lower eval peak)
            gcn.kept.clear()
            gcn.scratch.clear()
        return self.cached(self.propagate)
