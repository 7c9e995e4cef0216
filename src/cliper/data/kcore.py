"""Iterative k-core filtering of a user-item graph.

Removing a sparse user can push an item below the threshold and vice versa, so the
filter repeats until nothing changes. The k-core is the unique largest subgraph in
which every user has >= ``user_k`` and every item >= ``item_k`` interactions, so the
order of removals does not matter: each round drops every violating row at once
(vectorised counts, no per-row Python loop) and works on the survivors only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KCoreResult:
    """``keep`` is a boolean mask over the input rows; ``rounds`` counts passes that removed rows."""

    keep: np.ndarray
    rounds: int

    @property
    def n_kept(self) -> int:
        return int(self.keep.sum())


def kcore_mask(users: np.ndarray, items: np.ndarray, user_k: int, item_k: int | None = None) -> KCoreResult:
    """Mask of the rows in the (``user_k``, ``item_k``)-core; ``item_k`` defaults to ``user_k``.

    ``users``/``items`` are non-negative integer codes (e.g. from :func:`pandas.factorize`), one
    row per distinct interaction. A threshold <= 1 filters nothing on that side.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if users.shape != items.shape:
        raise ValueError("users and items must have the same length")
    item_k = user_k if item_k is None else item_k
    n = users.shape[0]
    if n == 0 or (user_k <= 1 and item_k <= 1):
        return KCoreResult(np.ones(n, dtype=bool), 0)
    nu, ni = int(users.max()) + 1, int(items.max()) + 1
    alive = np.arange(n)  # indices of surviving rows
    u, i = users, items
    rounds = 0
    while alive.size:
        ucount = np.bincount(u, minlength=nu)
        icount = np.bincount(i, minlength=ni)
        ok = (ucount[u] >= user_k) & (icount[i] >= item_k)
        if ok.all():
            break
        rounds += 1
        alive, u, i = alive[ok], u[ok], i[ok]
        log.debug("k-core round %d: %d rows left", rounds, alive.size)
    keep = np.zeros(n, dtype=bool)
    keep[alive] = True
    return KCoreResult(keep, rounds)
