"""Vectorised negative sampling: uniform items that are never one of the user's train items."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cliper.errors import DataError


class NegativeSampler:
    """Draw, for each user in a batch, a uniform item outside that user's train set.

    Train pairs are kept as sorted keys ``user * n_items + item``; a draw is checked
    with one ``searchsorted`` and only the collisions are redrawn, so the cost is a
    few array passes per batch, never a per-row Python loop.
    """

    def __init__(self, train_matrix: sp.csr_matrix):
        m = train_matrix.tocsr()
        m.sort_indices()
        self.n_items = int(m.shape[1])
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        self._keys = rows * self.n_items + m.indices.astype(np.int64)
        full = np.flatnonzero(np.diff(m.indptr) >= self.n_items)
        self._full_users = set(full.tolist())

    def is_train(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean mask: is (user, item) a train pair."""
        keys = users.astype(np.int64) * self.n_items + items
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, self._keys.size - 1)
        return self._keys[pos] == keys

    def sample(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self._full_users and not self._full_users.isdisjoint(np.unique(users).tolist()):
            bad = sorted(self._full_users.intersection(np.unique(users).tolist()))[0]
            raise DataError(f"user {bad} has interacted with every item: no negative item exists")
        neg = rng.integers(0, self.n_items, size=users.shape[0], dtype=np.int64)
        todo = np.flatnonzero(self.is_train(users, neg))
        while todo.size:
            neg[todo] = rng.integers(0, self.n_items, size=todo.size, dtype=np.int64)
            todo = todo[self.is_train(users[todo], neg[todo])]
        return neg
