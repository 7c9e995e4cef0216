"""The fast sparse products (int32 CSR + addmm(out=) or embedding_bag, layer_sum) against dense arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from cliper.graphs.adjacency import (SparseGraph, bag_mm, layer_sum, normalized_bipartite, propagate_rows,
                                    sparse_mm)

KERNELS = pytest.mark.parametrize("kernel", ["mkl", "bag"])


def _matrix(rows=30, cols=20, density=0.15, seed=0):
    m = sp.random(rows, cols, density=density, format="csr", dtype=np.float32, random_state=seed)
    keep = np.ones(rows, dtype=np.float32)
    keep[3] = 0  # an empty row: the kernel must still write zeros there
    m = sp.csr_matrix(sp.diags(keep) @ m)
    m.eliminate_zeros()
    return m


@KERNELS
def test_sparse_mm_matches_dense_for_matrices_vectors_and_odd_inputs(kernel):
    m = _matrix()
    g = SparseGraph(m, kernel=kernel)
    assert g.matrix.crow_indices().dtype == torch.int32
    dense = torch.tensor(m.toarray())
    x = torch.randn(20, 7)
    assert torch.allclose(g.mm(g.matrix, x), dense @ x, atol=1e-6)
    assert torch.allclose(g @ x[:, 0], dense @ x[:, 0], atol=1e-6)  # 1-D
    wide = torch.randn(7, 20).T  # non-contiguous
    assert torch.allclose(g @ wide, dense @ wide, atol=1e-6)
    assert (g @ x)[3].abs().sum() == 0
    assert (g @ x.double()).dtype == torch.float32  # cast to the matrix's dtype
    empty = SparseGraph(sp.csr_matrix((5, 4), dtype=np.float32), kernel=kernel)
    assert torch.equal(empty @ torch.randn(4, 3), torch.zeros(5, 3))
    x.requires_grad_(True)
    (g @ x * torch.arange(30.0)[:, None]).sum().backward()  # the backward product uses the transpose
    assert torch.allclose(x.grad, dense.T @ torch.arange(30.0)[:, None].expand(30, 7), atol=1e-5)


def test_bag_kernel_agrees_with_mkl_and_float64_and_ignores_the_thread_count():
    """embedding_bag sums each row in a fixed order: the same bits at 1 and 2 threads; MKL's rounding
    differs, both are within float32 rounding of a float64 product."""
    m = normalized_bipartite(sp.random(300, 200, density=0.05, format="csr", dtype=np.float32, random_state=5))
    a = SparseGraph(m).matrix
    x = torch.randn(500, 64)
    ref = torch.tensor(m.toarray(), dtype=torch.float64) @ x.double()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = bag_mm(a, x)
        torch.set_num_threads(2)
        two = bag_mm(a, x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    assert torch.allclose(one.double(), ref, atol=1e-5)
    assert torch.allclose(sparse_mm(a, x).double(), ref, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # fp32 under autocast, as sparse_mm
        assert bag_mm(a, x.bfloat16()).dtype == torch.float32


def test_unknown_kernel_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown sparse kernel 'dense'"):
        SparseGraph(_matrix(), kernel="dense")


@KERNELS
@pytest.mark.parametrize("n_layers", [0, 1, 3])
@pytest.mark.parametrize("mean", [True, False])
def test_layer_sum_values_and_gradients_match_dense_powers(n_layers, mean, kernel):
    m = _matrix(25, 25, seed=1)  # not symmetric: the backward must use the transpose
    a = torch.tensor(m.toarray(), dtype=torch.float64)
    x0 = torch.randn(25, 6, dtype=torch.float64)
    weight = torch.randn(25, 6, dtype=torch.float64)
    xd = x0.clone().requires_grad_(True)
    ref, layer = xd, xd
    for _ in range(n_layers):
        layer = a @ layer
        ref = ref + layer
    ref = ref / (n_layers + 1) if mean else ref
    (ref * weight).sum().backward()
    x = x0.float().requires_grad_(True)
    out = layer_sum(SparseGraph(m, kernel=kernel), x, n_layers, mean=mean)
    (out * weight.float()).sum().backward()
    assert torch.allclose(out.double(), ref, atol=1e-5)
    assert torch.allclose(x.grad.double(), xd.grad, atol=1e-5)
    with torch.no_grad():  # the no-autograd path gives the same values
        assert torch.allclose(layer_sum(SparseGraph(m, kernel=kernel), x, n_layers, mean=mean).double(), ref,
                              atol=1e-5)


@KERNELS
def test_layer_sum_equals_the_per_layer_loop_bit_for_bit(kernel):
    """What the docstring promises: seeded runs of models switched to layer_sum keep their numbers."""
    m = normalized_bipartite(sp.random(40, 30, density=0.1, format="csr", dtype=np.float32, random_state=2))
    g = SparseGraph(m, symmetric=True, kernel=kernel)
    x = torch.randn(70, 8, requires_grad=True)
    w = torch.randn(70, 8)
    out, layer = x, x
    for _ in range(3):
        layer = g @ layer
        out = out + layer
    (out / 4 * w).sum().backward()
    loop_grad, x.grad = x.grad, None
    fast = layer_sum(g, x, 3, mean=True)
    (fast * w).sum().backward()
    assert torch.equal(fast, out / 4)
    assert torch.equal(x.grad, loop_grad)


@KERNELS
@pytest.mark.parametrize("n_layers", [0, 1, 2, 3])
@pytest.mark.parametrize("mean", [True, False])
@pytest.mark.parametrize("use", ["both", "propagated", "input"])
def test_propagate_rows_values_and_gradients_match_dense_powers(n_layers, mean, use, kernel):
    """The batch-rows propagation against dense float64 powers, rows repeated and out of order included,
    with the gradient arriving through the propagated rows, the input rows (an L2 penalty) or both."""
    m = _matrix(25, 25, seed=3)  # not symmetric: the block's transpose must be A[rows]^T, not A[:, rows]
    a = torch.tensor(m.toarray(), dtype=torch.float64)
    rows = torch.tensor([7, 3, 3, 24, 0, 11, 3])  # row 3 is the matrix's empty row
    x0 = torch.randn(25, 6, dtype=torch.float64)
    w, w0 = torch.randn(rows.numel(), 6, dtype=torch.float64), torch.randn(rows.numel(), 6, dtype=torch.float64)

    def loss(out, x_rows):
        return ((out * w).sum() if use != "input" else 0) + ((x_rows * w0).sum() if use != "propagated" else 0)

    xd = x0.clone().requires_grad_(True)
    ref, layer = xd, xd
    for _ in range(n_layers):
        layer = a @ layer
        ref = ref + layer
    ref = (ref / (n_layers + 1) if mean else ref)[rows]
    loss(ref, xd[rows]).backward()
    x = x0.float().requires_grad_(True)
    out, x_rows = propagate_rows(SparseGraph(m, kernel=kernel), x, n_layers, rows, mean=mean)
    loss(out, x_rows).backward()
    assert out.shape == x_rows.shape == (rows.numel(), 6)
    assert torch.allclose(out.double(), ref, atol=1e-5)
    assert torch.equal(x_rows, x.detach()[rows])
    assert torch.allclose(x.grad.double(), xd.grad, atol=1e-5)
    with torch.no_grad():
        fast = propagate_rows(SparseGraph(m, kernel=kernel), x, n_layers, rows, mean=mean)[0]
        assert torch.allclose(fast.double(), ref, atol=1e-5)


@KERNELS
def test_propagate_rows_equals_the_full_propagation(kernel):
    """LightGCN's batch path keeps the full path's values exactly and its gradients to float rounding."""
    m = normalized_bipartite(sp.random(60, 45, density=0.08, format="csr", dtype=np.float32, random_state=4))
    g = SparseGraph(m, symmetric=True, kernel=kernel)
    rows = torch.tensor([0, 5, 5, 59, 60, 61, 104, 70, 61])
    nodes, where = torch.unique(rows, return_inverse=True)
    w = torch.randn(rows.numel(), 8)
    for n_layers in (1, 2, 3):
        x = torch.randn(105, 8, requires_grad=True)
        full = layer_sum(g, x, n_layers, mean=True).index_select(0, rows)
        (full * w).sum().backward()
        full_grad, x.grad = x.grad, None
        fast = propagate_rows(g, x, n_layers, nodes, mean=True)[0].index_select(0, where)
        (fast * w).sum().backward()
        assert torch.equal(fast, full)
        assert torch.allclose(x.grad, full_grad, rtol=1e-6, atol=1e-6)
        assert not torch.equal(x.grad, torch.zeros_like(x.grad))


def test_layer_sum_rejects_negative_depth():
    with pytest.raises(ValueError, match="n_layers"):
        layer_sum(SparseGraph(_matrix()), torch.randn(20, 2), -1)


def test_sparse_graph_deepcopies():
    """A model holding a CSR graph can be deep-copied (torch alone cannot copy a CSR tensor)."""
    import copy

    import numpy as np
    import scipy.sparse as sp

    from cliper.graphs.adjacency import SparseGraph

    m = sp.random(30, 20, density=0.2, format="csr", random_state=np.random.default_rng(0), dtype=np.float32)
    g = SparseGraph(m, kernel="bag")
    c = copy.deepcopy(g)
    x = torch.randn(20, 3)
    assert c.matrix is not g.matrix and c.shape == g.shape and c.kernel == "bag"
    assert torch.equal(c @ x, g @ x)
    assert torch.allclose(c @ x, torch.from_numpy(m.toarray()) @ x, atol=1e-6)
