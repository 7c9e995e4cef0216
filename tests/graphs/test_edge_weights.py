import numpy as np
import pytest
import scipy.sparse as sp
import torch

from cliper.graphs.edge_weights import EdgePattern


@pytest.fixture
def pattern():
    m = sp.random(9, 6, density=0.35, random_state=3, format="lil")
    m[4, :] = 0  # a row without edges
    return EdgePattern(sp.csr_matrix(m))


def test_matmul_matches_dense_and_gradcheck(pattern):
    vals = torch.randn(pattern.nnz, dtype=torch.float64, requires_grad=True)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(pattern.matmul(vals, x), pattern.dense(vals.detach()) @ x)
    assert torch.autograd.gradcheck(lambda v, y: pattern.matmul(v, y), (vals, x))


def test_edge_dot_and_softmax_gradcheck(pattern):
    t = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    s = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    dots = pattern.edge_dot(t, s)
    assert torch.allclose(dots, (t[pattern.rows] * s[pattern.cols]).sum(1))
    assert torch.autograd.gradcheck(lambda a, b: pattern.segment_softmax(pattern.edge_dot(a, b)), (t, s))


def test_softmax_sums_to_one_per_row(pattern):
    a = pattern.segment_softmax(torch.randn(pattern.nnz) * 50)
    sums = pattern.segment_sum(a)
    has = torch.diff(pattern.crow) > 0
    assert torch.allclose(sums[has], torch.ones(int(has.sum())), atol=1e-6)
    assert sums[4] == 0


def test_transpose_order(pattern):
    vals = torch.randn(pattern.nnz)
    t = pattern.transpose()
    assert t.shape == (6, 9)
    assert torch.equal(t.dense(pattern.to_transposed_order(vals)), pattern.dense(vals).T)
    assert torch.equal(t.transpose().dense(vals), pattern.dense(vals))
    with pytest.raises(ValueError, match="edge values"):
        pattern.matmul(torch.ones(pattern.nnz + 1), torch.ones(6, 1))
    assert np.isclose(float(pattern.segment_sum(torch.ones(pattern.nnz)).sum()), pattern.nnz)


def test_csr_and_coo_paths_agree(monkeypatch):
    import cliper.graphs.edge_weights as ew

    p = EdgePattern(sp.random(60, 40, density=0.2, random_state=0, format="csr"))

    def run():
        g = torch.Generator().manual_seed(0)
        v = torch.randn(p.nnz, generator=g, requires_grad=True)
        x = torch.randn(40, 5, generator=g, requires_grad=True)
        t = torch.randn(60, 5, generator=g, requires_grad=True)
        out = p.matmul(p.segment_softmax(p.edge_dot(t, x)) * v, x).pow(2).sum()
        out.backward()
        return out.detach(), v.grad, x.grad, t.grad

    coo = run()
    monkeypatch.setattr(ew, "CSR_MIN_NNZ", 1)
    csr = run()
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(coo, csr))
