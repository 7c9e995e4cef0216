"""Aggregates, relative improvement and paired tests against scipy on hand-made numbers."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from cliper.experiments import stats


def test_mean_std_is_sample_std():
    m, s = stats.mean_std([0.10, 0.12, 0.14])
    assert m == pytest.approx(0.12)
    assert s == pytest.approx(0.02)  # ddof=1
    m1, s1 = stats.mean_std([0.3])
    assert m1 == pytest.approx(0.3) and math.isnan(s1)


def test_relative_improvement_formula():
    # the paper's FREEDOM on Baby: R@20 9.92 -> 10.26
    assert stats.relative_improvement(0.0992, 0.1026) == pytest.approx((0.1026 - 0.0992) / 0.0992 * 100)
    assert stats.relative_improvement(0.2, 0.1) == pytest.approx(-50.0)
    assert math.isnan(stats.relative_improvement(0.0, 0.1))


def test_paired_users_matches_scipy_and_pools_seeds_by_user():
    rng = np.random.default_rng(0)
    users = np.arange(200)
    base_seeds = [rng.uniform(0, 1, 200) for _ in range(3)]
    treat_seeds = [b + rng.normal(0.05, 0.2, 200) for b in base_seeds]
    # shuffle the user order of one run: pooling must align by user id, not position
    perm = rng.permutation(200)
    base = [(users, base_seeds[0]), (users[perm], base_seeds[1][perm]), (users, base_seeds[2])]
    treat = [(users, t) for t in treat_seeds]
    res = stats.paired_users(base, treat)
    a = np.mean(base_seeds, axis=0)
    b = np.mean(treat_seeds, axis=0)
    assert res.n == 200
    assert res.mean_diff == pytest.approx((b - a).mean())
    assert res.p_wilcoxon == pytest.approx(sps.wilcoxon(b, a).pvalue)
    assert res.p_ttest == pytest.approx(sps.ttest_rel(b, a).pvalue)
    assert res.p_wilcoxon < 0.05  # a real shift of 0.05 over 200 users


def test_paired_users_only_common_users_and_degenerate_cases():
    base = [(np.array([0, 1, 2, 3]), np.array([0.1, 0.2, 0.3, 0.4]))]
    treat = [(np.array([1, 2, 3, 4]), np.array([0.2, 0.3, 0.5, 0.9]))]
    res = stats.paired_users(base, treat)
    assert res.n == 3
    assert res.mean_diff == pytest.approx(((0.2 - 0.2) + (0.3 - 0.3) + (0.5 - 0.4)) / 3)
    same = stats.paired_users(base, base)
    assert same.p_wilcoxon == 1.0 and same.p_ttest == 1.0
    assert math.isnan(stats.paired_users([], treat).p_wilcoxon)


def test_paired_seeds_is_a_paired_t_test_on_matching_seeds():
    a = {0: 0.10, 1: 0.12, 2: 0.11, 3: 0.13}
    b = {0: 0.12, 1: 0.13, 2: 0.14, 9: 0.50}  # seed 3 / 9 unpaired: left out
    n, p = stats.paired_seeds(a, b)
    assert n == 3
    assert p == pytest.approx(sps.ttest_rel([0.12, 0.13, 0.14], [0.10, 0.12, 0.11]).pvalue)
    n1, p1 = stats.paired_seeds({0: 0.1}, {0: 0.2})
    assert n1 == 1 and math.isnan(p1)
