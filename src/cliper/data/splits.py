"""Train/valid/test assignment per user: MMRec-style random split and leave-last-out.

Both work on contiguous integer ids, vectorised over all rows (sort + rank within
user), and return one label per row: 0 train, 1 valid, 2 test. Results depend only
on the set of (user, item[, timestamp]) rows and the seed, never on the row order.
"""

from __future__ import annotations

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_METHODS = ("random", "temporal")


def eval_counts(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid, test) counts for users with ``n`` interactions — the exact rule.

    * ``n >= 10``: valid = test = ``(n + 5) // 10``, i.e. 10 % rounded half up
      (10..14 -> 1, 15..24 -> 2, 25..34 -> 3); train = ``n - 2 * valid`` (about 80 %).
    * ``3 <= n < 10``: valid = test = 1, train = ``n - 2``.
    * ``n == 2``: train 1, valid 0, test 1.  ``n == 1``: train only.

    So every user keeps at least one train item (for ``n >= 10`` train >= 8).
    """
    n = np.asarray(n, dtype=np.int64)
    per = np.where(n >= 10, (n + 5) // 10, np.where(n >= 3, 1, 0))
    valid = per
    test = np.where(n == 2, 1, per)
    return valid, test


def _labels_from_rank(user_sorted: np.ndarray, n_users: int) -> np.ndarray:
    """Labels for rows already sorted by user, where position within a user's block decides:
    the first ``test`` rows of a block go to test, the next ``valid`` rows to valid, the rest train."""
    counts = np.bincount(user_sorted, minlength=n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(user_sorted.size) - starts[user_sorted]
    valid, test = eval_counts(counts)
    t, v = test[user_sorted], valid[user_sorted]
    return np.where(rank < t, TEST, np.where(rank < t + v, VALID, TRAIN)).astype(np.int8)


def random_split(users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """Seeded random per-user split with the counts of :func:`eval_counts`.

    Rows are put in canonical (user, item) order, each gets a uniform random key from
    ``numpy.random.default_rng(seed)``, and within each user the rows with the smallest keys
    go to test, then valid; the rest are train.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    canon = np.lexsort((items, users))
    keys = np.empty(users.size, dtype=np.float64)
    keys[canon] = np.random.default_rng(seed).random(users.size)
    order = np.lexsort((keys, users))
    labels = np.empty(users.size, dtype=np.int8)
    n_users = int(users.max()) + 1 if users.size else 0
    labels[order] = _labels_from_rank(users[order], n_users)
    return labels


def temporal_split(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Leave-last-out: each user's latest row -> test, second latest -> valid, the rest train.

    "Latest" orders by (timestamp, item id): among rows with equal timestamps the larger item id
    counts as later. Users with 2 rows give train + test; users with 1 row give train only.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    ts = np.asarray(timestamps)
    # descending time within user: sort ascending on the negated keys
    order = np.lexsort((-items, -ts, users))
    u = users[order]
    counts = np.bincount(u, minlength=int(users.max()) + 1 if users.size else 0)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(u.size) - starts[u]
    has_valid = counts[u] >= 3
    lab = np.where(
        (rank == 0) & (counts[u] >= 2), TEST, np.where((rank == 1) & has_valid, VALID, TRAIN)
    ).astype(np.int8)
    labels = np.empty(users.size, dtype=np.int8)
    labels[order] = lab
    return labels
