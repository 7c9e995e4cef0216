"""Aggregates over seeds and paired significance tests of a metric difference.

Two pairings are offered:

- **over users** (the one tables mark with ``*``): for each side, every user's test
  metric is averaged over the seeds (``test_per_user.npz`` of each run's selected
  model), then the two per-user vectors are compared with a two-sided Wilcoxon
  signed-rank test (zero differences dropped, scipy's default) -- per-user recall and
  NDCG are far from normal, with many ties at 0 -- and, for reference, a paired t-test;
- **over seeds**: the seed-k run of one side paired with the seed-k run of the other
  (same seed, same data order), paired t-test on the seed means; needs >= 2 seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

SIGNIFICANCE_LEVEL = 0.05
TEST_NOTE = (
    "Significance: two-sided Wilcoxon signed-rank test paired over test users (each user's metric "
    "averaged over seeds; zero differences dropped); * marks p < 0.05. The CSV also gives a paired "
    "t-test over users and a paired t-test over seeds (seed k vs seed k)."
)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def relative_improvement(base: float, new: float) -> float:
    """``(new - base) / base * 100`` (percent); NaN when the base is 0 or missing."""
    if base is None or new is None or not np.isfinite(base) or not np.isfinite(new) or base == 0:
        return math.nan
    return (new - base) / base * 100.0


@dataclass
class PairedResult:
    n: int
    mean_diff: float  # treatment - baseline
    p_wilcoxon: float
    p_ttest: float


def _ttest(a: np.ndarray, b: np.ndarray) -> float:
    d = b - a
    if d.size < 2:
        return math.nan
    if np.all(d == d[0]):  # zero variance: scipy would return NaN
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_rel(b, a).pvalue)


def _wilcoxon(a: np.ndarray, b: np.ndarray) -> float:
    d = b - a
    if d.size == 0:
        return math.nan
    if not np.any(d != 0):
        return 1.0  # no user differs: no evidence of a difference
    return float(stats.wilcoxon(b, a).pvalue)


def paired_users(baseline: list[tuple[np.ndarray, np.ndarray]], treatment: list[tuple[np.ndarray, np.ndarray]]) -> PairedResult:
    """Paired test over users. Each side: one (users, values) pair per seed, averaged per user over seeds."""
    if not baseline or not treatment:
        return PairedResult(0, math.nan, math.nan, math.nan)
    a_users, a = _average_per_user(baseline)
    b_users, b = _average_per_user(treatment)
    common, ia, ib = np.intersect1d(a_users, b_users, return_indices=True)
    a, b = a[ia], b[ib]
    return PairedResult(int(common.size), float((b - a).mean()) if common.size else math.nan,
                        _wilcoxon(a, b), _ttest(a, b))


def _average_per_user(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    users = runs[0][0]
    for u, _ in runs[1:]:
        users = np.intersect1d(users, u)
    users = np.sort(users)
    total = np.zeros(users.size, dtype=np.float64)
    for u, v in runs:
        order = np.argsort(u)
        pos = order[np.searchsorted(u, users, sorter=order)]
        total += np.asarray(v, dtype=np.float64)[pos]
    return users, total / len(runs)


def paired_seeds(baseline: dict[int, float], treatment: dict[int, float]) -> tuple[int, float]:
    """(number of paired seeds, p of a paired t-test over seeds); p is NaN below 2 pairs."""
    seeds = sorted(set(baseline) & set(treatment))
    a = np.array([baseline[s] for s in seeds], dtype=np.float64)
    b = np.array([treatment[s] for s in seeds], dtype=np.float64)
    return len(seeds), _ttest(a, b)
