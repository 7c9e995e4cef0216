"""k-core filtering: hand-made cascade, and agreement with a one-node-at-a-time reference."""

from __future__ import annotations

import numpy as np
import pytest

from cliper.data.kcore import kcore_mask


def _reference_kcore(users, items, uk, ik):
    """Slow reference: repeatedly delete ONE violating node (different order, same unique core)."""
    alive = set(range(len(users)))
    while True:
        ucount, icount = {}, {}
        for r in alive:
            ucount[users[r]] = ucount.get(users[r], 0) + 1
            icount[items[r]] = icount.get(items[r], 0) + 1
        bad_u = sorted(u for u, c in ucount.items() if c < uk)
        bad_i = sorted(i for i, c in icount.items() if c < ik)
        if not bad_u and not bad_i:
            return alive
        if bad_i:  # items first, to take a different path than the vectorised version
            alive = {r for r in alive if items[r] != bad_i[-1]}
        else:
            alive = {r for r in alive if users[r] != bad_u[0]}


def test_cascade_hand_made():
    # u0,u1: i0,i1 | u2: i1,i2 | u3: i2 only.  2-core: u3 goes (deg 1) -> i2 drops to 1 -> goes
    # -> u2 drops to 1 -> goes; i1 keeps u0,u1 (2). Left: {u0,u1} x {i0,i1}.
    users = np.array([0, 0, 1, 1, 2, 2, 3])
    items = np.array([0, 1, 0, 1, 1, 2, 2])
    res = kcore_mask(users, items, 2)
    assert res.keep.tolist() == [True, True, True, True, False, False, False]
    assert res.rounds == 3  # u3 removed, then i2, then u2
    assert res.n_kept == 4


def test_separate_user_and_item_thresholds():
    # item 2 has a single interaction; with item_k=1 it stays, with item_k=2 it cascades away.
    users = np.array([0, 0, 0, 1, 1, 1])
    items = np.array([0, 1, 2, 0, 1, 3])
    assert kcore_mask(users, items, 3, 1).keep.all()
    # item_k=2: items 2 and 3 go -> both users drop to 2 < 3 -> everything goes
    assert not kcore_mask(users, items, 3, 2).keep.any()


def test_threshold_one_or_zero_keeps_everything():
    users = np.array([0, 1, 2])
    items = np.array([0, 0, 1])
    for k in (0, 1):
        res = kcore_mask(users, items, k)
        assert res.keep.all() and res.rounds == 0


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 30, 25
    pairs = {(int(rng.integers(n_users)), int(rng.integers(n_items))) for _ in range(220)}
    users = np.array([p[0] for p in pairs])
    items = np.array([p[1] for p in pairs])
    uk, ik = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    res = kcore_mask(users, items, uk, ik)
    assert set(np.flatnonzero(res.keep).tolist()) == _reference_kcore(users, items, uk, ik)
    if res.keep.any():  # the survivors satisfy both thresholds
        assert np.bincount(users[res.keep])[np.unique(users[res.keep])].min() >= uk
        assert np.bincount(items[res.keep])[np.unique(items[res.keep])].min() >= ik
