"""The exact search's tiled, grouped candidate selection: the m best of a row whatever the grouping,
ties at the m-th value keep the smaller index, and whole searches still match a dense computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliper.graphs.knn import topk_cosine
from cliper.graphs.knn_search import GROUP, SUPER, _Selection, _stable_best

TWO_LEVEL = GROUP * SUPER * 30 + 7  # group maxima grouped again, with padding


def _reference(tile: torch.Tensor, m: int) -> np.ndarray:
    """The m best columns per row by (value desc, index asc), from a stable full sort."""
    return np.argsort(-tile.double().numpy(), axis=1, kind="stable")[:, :m]


def _top_columns(tile: torch.Tensor, m: int) -> torch.Tensor:
    """Columns of the ``m`` largest values of each row of ``tile`` by one _Selection as the search
    runs it: a padded tile, its settled rows, and the unsettled ones sorted stably."""
    nr, n = tile.shape
    sel = _Selection(nr, n, m, nr, tile.device)
    padded = torch.full((nr, sel.width), -torch.inf, device=tile.device)
    padded[:, :n] = tile
    sel.take(padded, 0)
    bad = sel.unsettled()
    sel.cols[bad] = _stable_best(tile[bad], m)
    return sel.cols


def _as_sets(idx) -> list[set]:
    return [set(r) for r in np.asarray(idx).tolist()]


@pytest.mark.parametrize("n", [GROUP * 40, GROUP * 40 + 7, 100, TWO_LEVEL])  # grouped, with padding, plain, two levels
@pytest.mark.parametrize("m", [1, 5, 13])
def test_top_columns_are_the_m_best(n, m):
    tile = torch.randn(9, n, generator=torch.Generator().manual_seed(n + m))
    tile[0, 3] = -torch.inf
    assert _as_sets(_top_columns(tile, m)) == _as_sets(_reference(tile, m))


def test_the_shapes_take_the_intended_paths():
    assert not _Selection(1, 100, 13, 1, "cpu").grouped
    one = _Selection(1, GROUP * 40, 13, 1, "cpu")
    assert one.grouped and not one.two_level
    two = _Selection(1, TWO_LEVEL, 13, 1, "cpu")
    assert two.two_level and two.width >= TWO_LEVEL and two.g % SUPER == 0


@pytest.mark.parametrize("n", [GROUP * 40 + 3, 90, TWO_LEVEL])
def test_ties_at_the_boundary_keep_the_smaller_index(n):
    g = torch.Generator().manual_seed(1)
    tile = torch.randint(0, 4, (12, n), generator=g).float()  # every row is full of exact ties
    tile[1] = 0.0  # a row that is one big tie
    tile[2, n - 5 :] = 9.0  # the best values in the tail columns
    assert _as_sets(_top_columns(tile, 13)) == _as_sets(_reference(tile, 13))


def test_nan_rows_do_not_break_the_selection():
    tile = torch.randn(3, GROUP * 40)
    tile[1, 7] = torch.nan
    out = _top_columns(tile, 6)
    assert out.shape == (3, 6) and _as_sets(out[[0, 2]]) == _as_sets(_reference(tile[[0, 2]], 6))


def test_duplicate_items_take_the_smallest_indices():
    """25 copies of one item among 700: each copy's 10 neighbours are itself and the 9 smallest
    other copies. torch.topk alone picks an arbitrary 13 of the 24 tied candidates."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((700, 16)).astype(np.float32)
    copies = np.sort(rng.choice(700, 25, replace=False))
    x[copies] = x[copies[0]]
    _, idx = topk_cosine(x, 10)
    for c in copies:
        others = [o for o in copies if o != c][:9]
        assert idx[c].tolist() == [c, *others]


@pytest.mark.parametrize("n, d, chunk", [(700, 12, None), (700, 12, 1), (700, 12, 13), (700, 12, 700),
                                         (700, 300, 13), (704, 300, None)])  # copied / scaled, padded / not
def test_tiled_search_matches_dense(n, d, chunk):
    x = np.random.default_rng(2).standard_normal((n, d)).astype(np.float32)
    x[5] = 0.0  # a zero row: similarity 0 to everything
    x[9] = x[17] = x[40]  # duplicates: ties keep the smaller index
    vals, idx = topk_cosine(x, 8, chunk_size=chunk)
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    xn = np.divide(x, norms, out=np.zeros_like(x, dtype=np.float64), where=norms > 0)
    sim = xn @ xn.T
    np.fill_diagonal(sim, np.inf)  # self first
    didx = np.argsort(-sim, axis=1, kind="stable")[:, :8]
    assert (idx.numpy() == didx).all()
    np.testing.assert_allclose(vals.numpy()[:, 1:], np.take_along_axis(sim, didx, 1)[:, 1:], atol=1e-6)


def test_without_the_normalised_copy_the_neighbours_are_the_same(monkeypatch):
    import cliper.graphs.knn_search as ks

    x = np.random.default_rng(4).standard_normal((700, 12)).astype(np.float32)
    x[3] = x[8]
    vals, idx = topk_cosine(x, 8)
    monkeypatch.setattr(ks, "_COPY_MAX_FLOATS", 0)  # the scaled-tile path of wide or huge inputs
    vals2, idx2 = topk_cosine(x, 8)
    assert torch.equal(idx, idx2) and torch.equal(vals, vals2)


@pytest.mark.parametrize("n, d", [(700, 12), (90, 5), (TWO_LEVEL, 8)])
@pytest.mark.parametrize("k, include_self", [(10, True), (6, False), (1, True)])
def test_indices_without_values_are_those_of_the_full_rescoring(n, d, k, include_self):
    rng = np.random.default_rng(n + k)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[2] = 0.0
    x[[4, 11, 30]] = x[7]  # exact ties
    x[50] = x[51] * (1 + 1e-7)  # a near-tie, inside float32 rounding
    full_vals, full_idx = topk_cosine(x, k, include_self=include_self)
    vals, idx = topk_cosine(x, k, include_self=include_self, with_values=False)
    assert vals is None and torch.equal(idx, full_idx)


def test_float32_decides_only_rows_with_clear_gaps():
    from cliper.graphs.knn_search import _decided_in_float32

    inv = torch.ones(3)
    values = torch.tensor([[0.9, 0.8, 0.7], [0.9, 0.9, 0.1], [0.9, 0.9 - 1e-6, 0.1]])
    assert _decided_in_float32(values, inv, 64, 3).tolist() == [True, False, False]
    assert _decided_in_float32(values, torch.zeros(3), 64, 3).tolist() == [False, False, False]  # zero rows
