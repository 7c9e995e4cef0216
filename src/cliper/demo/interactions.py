"""Simulated users' choices and MMRec's random per-user train/valid/test split.

A user's affinity for an item adds weights for matching their favourite and second
category, favourite colours, favourite pattern, favourite brands and price tier, plus
the item's latent quality (a popularity effect) and Gaussian taste noise. Each user
picks ``activity`` distinct items from softmax(affinity / temperature) (Gumbel top-k),
so content attributes visibly drive choices while popularity still matters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cliper.demo import vocabulary as V
from cliper.demo.latent import Item, UserTaste


@dataclass(frozen=True)
class AffinityWeights:
    """How much each matching attribute raises a user's utility for an item."""

    main_category: float = 3.0
    second_category: float = 1.5
    colour: float = 1.2
    pattern: float = 0.6
    brand: float = 1.2
    tier: float = 0.5
    quality: float = 0.6
    noise: float = 0.5
    temperature: float = 0.7


def affinity_matrix(
    rng: np.random.Generator, users: list[UserTaste], items: list[Item], w: AffinityWeights
) -> np.ndarray:
    """users x items utility matrix (float64)."""
    cat_idx = {c: k for k, c in enumerate(V.CATEGORIES)}
    col_idx = {c: k for k, c in enumerate(V.COLOURS)}
    pat_idx = {p: k for k, p in enumerate(V.PATTERNS)}
    tier_idx = {t: k for k, t in enumerate(V.PRICE_TIERS)}
    i_cat = np.array([cat_idx[it.category] for it in items])
    i_col = np.array([col_idx[it.colour] for it in items])
    i_pat = np.array([pat_idx[it.pattern] for it in items])
    i_brand = np.array([it.brand for it in items])
    i_tier = np.array([tier_idx[it.tier] for it in items])
    i_q = np.array([it.quality for it in items])
    u_cat = np.array([cat_idx[u.main_category] for u in users])[:, None]
    u_cat2 = np.array([cat_idx[u.second_category] for u in users])[:, None]
    u_col = np.array([[col_idx[c] for c in u.colours] for u in users])
    u_pat = np.array([pat_idx[u.pattern] for u in users])[:, None]
    u_brand = np.array([u.brands for u in users])
    u_tier = np.array([tier_idx[u.tier] for u in users])[:, None]
    a = (
        w.main_category * (i_cat[None, :] == u_cat)
        + w.second_category * (i_cat[None, :] == u_cat2)
        + w.colour * ((i_col[None, :] == u_col[:, :1]) | (i_col[None, :] == u_col[:, 1:]))
        + w.pattern * (i_pat[None, :] == u_pat)
        + w.brand * ((i_brand[None, :] == u_brand[:, :1]) | (i_brand[None, :] == u_brand[:, 1:]))
        + w.tier * (i_tier[None, :] == u_tier)
        + w.quality * i_q[None, :]
    )
    return a + w.noise * rng.standard_normal(a.shape)


def sample_choices(
    rng: np.random.Generator, affinity: np.ndarray, activity: np.ndarray, temperature: float
) -> list[np.ndarray]:
    """Per user, ``activity[u]`` distinct items drawn without replacement from softmax(affinity/T)."""
    n_items = affinity.shape[1]
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, size=affinity.shape)))
    keys = affinity / temperature + gumbel
    order = np.argsort(-keys, axis=1, kind="stable")
    chosen = [order[u, : min(int(activity[u]), n_items - 1)].copy() for u in range(affinity.shape[0])]
    # Every item gets at least one interaction: an unchosen item goes to the user who likes it most.
    counts = np.zeros(n_items, dtype=np.int64)
    for c in chosen:
        counts[c] += 1
    for i in np.flatnonzero(counts == 0):
        u = int(np.argmax(keys[:, i]))
        chosen[u] = np.append(chosen[u], i)
    return chosen


def split_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    """MMRec's random per-user split: <10 items -> one valid and one test; else 80/10/10."""
    if n < 3:
        raise ValueError("a user needs at least 3 interactions for a train/valid/test split")
    if n < 10:
        n_valid = n_test = 1
    else:
        n_valid = n_test = int(round(0.1 * n))
    labels = np.zeros(n, dtype=np.int64)
    perm = rng.permutation(n)
    labels[perm[:n_valid]] = 1
    labels[perm[n_valid : n_valid + n_test]] = 2
    return labels


def ensure_train_coverage(users: np.ndarray, items: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Swap labels within a user so every item keeps at least one TRAIN interaction when possible.

    An item seen only in valid/test would be a cold item no ID model could score; the
    swap keeps each user's train/valid/test counts unchanged.
    """
    labels = labels.copy()
    train_count = np.bincount(items[labels == 0], minlength=int(items.max()) + 1)
    for row in np.flatnonzero(labels != 0):
        i = items[row]
        if train_count[i] > 0:
            continue
        same_user = np.flatnonzero((users == users[row]) & (labels == 0))
        donors = [r for r in same_user if train_count[items[r]] >= 2]
        if not donors:
            continue
        d = donors[0]
        labels[d], labels[row] = labels[row], 0
        train_count[items[d]] -= 1
        train_count[i] += 1
    return labels
