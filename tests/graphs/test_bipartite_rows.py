"""BipartiteGraph and propagate_bipartite_rows (LightGCN's batch path by user and item halves) against
dense float64 powers, and bit for bit against the concatenated-table path they replace."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from cliper.graphs.adjacency import (BipartiteGraph, SparseGraph, layer_sum, normalized_bipartite,
                                     propagate_bipartite_rows, propagate_rows)

N_USERS, N_ITEMS = 30, 22


def _train(seed=0):
    r = sp.random(N_USERS, N_ITEMS, density=0.12, format="csr", dtype=np.float32, random_state=seed)
    r.data[:] = 1.0
    r = r.tolil()
    r[4, :] = 0  # a user without interactions: a zero row, and a zero column of A
    return sp.csr_matrix(r)


def _tables(d=6, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(N_USERS, d, generator=gen, dtype=dtype), torch.randn(N_ITEMS, d, generator=gen, dtype=dtype)


def test_halves_are_the_user_and_item_blocks_of_the_graph():
    train = _train()
    g = BipartiteGraph(train, kernel="bag")
    a = normalized_bipartite(train).toarray()
    assert np.array_equal(g.users_part.to_dense().numpy(), a[:N_USERS, N_USERS:])
    assert np.array_equal(g.items_part.to_dense().numpy(), a[N_USERS:, :N_USERS])
    assert np.array_equal(g.matrix.to_dense().numpy(), a)  # still the whole graph for layer_sum / @


@pytest.mark.parametrize("kernel", ["mkl", "bag"])
@pytest.mark.parametrize("n_layers", [0, 1, 2, 3])
@pytest.mark.parametrize("mean", [True, False])
@pytest.mark.parametrize("use", ["both", "propagated", "input"])
def test_values_and_gradients_match_dense_powers(kernel, n_layers, mean, use):
    """Repeated and unsorted rows included; the gradient arrives through the propagated rows, the
    layer-0 rows (an L2 penalty) or both."""
    train = _train(1)
    a = torch.tensor(normalized_bipartite(train).toarray(), dtype=torch.float64)
    users = torch.tensor([7, 4, 4, 29, 0, 11])  # user 4 has no edges
    items = torch.tensor([3, 21, 0, 3, 9])
    xu0, xi0 = _tables(dtype=torch.float64)
    w = torch.randn(users.numel() + items.numel(), 6, dtype=torch.float64)
    w0 = torch.randn(users.numel() + items.numel(), 6, dtype=torch.float64)

    def loss(out_u, out_i, x_u_rows, x_i_rows):
        out, x_rows = torch.cat([out_u, out_i]), torch.cat([x_u_rows, x_i_rows])
        return ((out * w).sum() if use != "input" else 0) + ((x_rows * w0).sum() if use != "propagated" else 0)

    xu_d, xi_d = xu0.clone().requires_grad_(True), xi0.clone().requires_grad_(True)
    x = torch.cat([xu_d, xi_d])
    ref, layer = x, x
    for _ in range(n_layers):
        layer = a @ layer
        ref = ref + layer
    ref = ref / (n_layers + 1) if mean else ref
    refs = ref[users], ref[N_USERS + items], xu_d[users], xi_d[items]
    loss(*refs).backward()

    xu, xi = xu0.float().requires_grad_(True), xi0.float().requires_grad_(True)
    got = propagate_bipartite_rows(BipartiteGraph(train, kernel=kernel), xu, xi, n_layers, users, items, mean=mean)
    loss(*got).backward()
    for g, r in zip(got, refs):
        assert g.shape == r.shape
        assert torch.allclose(g.double(), r, atol=1e-5)
    assert torch.equal(got[2], xu.detach()[users]) and torch.equal(got[3], xi.detach()[items])
    assert torch.allclose(xu.grad.double(), xu_d.grad, atol=1e-5)
    assert torch.allclose(xi.grad.double(), xi_d.grad, atol=1e-5)
    with torch.no_grad():
        plain = propagate_bipartite_rows(BipartiteGraph(train, kernel=kernel), xu, xi, n_layers, users, items, mean)
    for g, r in zip(plain, refs):
        assert torch.allclose(g.double(), r, atol=1e-5)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_halves_equal_the_concatenated_table_bit_for_bit(n_layers):
    """The same products and adds split at the user/item boundary: with the bag kernel, values and
    gradients equal propagate_rows' on cat(users, items), and the forward values the full propagation's."""
    train = _train(2)
    g = BipartiteGraph(train, kernel="bag")
    plain = SparseGraph(normalized_bipartite(train), symmetric=True, kernel="bag")
    users, where_u = torch.unique(torch.tensor([5, 0, 5, 17, 29, 3]), return_inverse=True)
    items, where_i = torch.unique(torch.tensor([2, 2, 21, 8, 0, 13, 8]), return_inverse=True)
    xu0, xi0 = _tables(8, seed=3)
    w_u, w_i = torch.randn(where_u.numel(), 8), torch.randn(where_i.numel(), 8)
    w0_u, w0_i = torch.randn(where_u.numel(), 8), torch.randn(where_i.numel(), 8)

    def loss(out_u, out_i, x_u_rows, x_i_rows):
        return ((out_u[where_u] * w_u).sum() + (out_i[where_i] * w_i).sum()
                + (x_u_rows[where_u] * w0_u).sum() + (x_i_rows[where_i] * w0_i).sum())

    xu, xi = xu0.clone().requires_grad_(True), xi0.clone().requires_grad_(True)
    halves = propagate_bipartite_rows(g, xu, xi, n_layers, users, items, mean=True)
    loss(*halves).backward()

    xu2, xi2 = xu0.clone().requires_grad_(True), xi0.clone().requires_grad_(True)
    out, x_rows = propagate_rows(plain, torch.cat([xu2, xi2]), n_layers, torch.cat([users, items + N_USERS]), mean=True)
    k = users.numel()
    nodes = out[:k], out[k:], x_rows[:k], x_rows[k:]
    loss(*nodes).backward()
    for a, b in zip(halves, nodes):
        assert torch.equal(a, b)
    assert torch.equal(xu.grad, xu2.grad) and torch.equal(xi.grad, xi2.grad)
    assert xu.grad.abs().sum() > 0 and xi.grad.abs().sum() > 0
    full = layer_sum(plain, torch.cat([xu0, xi0]), n_layers, mean=True)
    assert torch.equal(halves[0], full[users]) and torch.equal(halves[1], full[N_USERS + items])


def test_copies_and_moves_keep_the_halves():
    g = BipartiteGraph(_train(), kernel="bag")
    c = copy.deepcopy(g)
    assert type(c) is BipartiteGraph and c.n_users == N_USERS and c.kernel == "bag"
    assert c.users_part.values().data_ptr() == c.matrix.values().data_ptr()  # views of the copy, not of g
    assert c.matrix.values().data_ptr() != g.matrix.values().data_ptr()
    moved = g.to("cpu")
    xu, xi = _tables()
    users, items = torch.tensor([1, 2]), torch.tensor([0, 5])
    for a, b in zip(propagate_bipartite_rows(c, xu, xi, 2, users, items), propagate_bipartite_rows(moved, xu, xi, 2, users, items)):
        assert torch.equal(a, b)
