"""Metrics against rankings computed by hand."""

import math

import numpy as np
import pytest
import torch

from cliper.evaluation.metrics import METRICS, parse_metric
from cliper.errors import ConfigError


def _run(name, hits, n_rel, k):
    return METRICS[name].fn(torch.tensor(hits, dtype=torch.bool), torch.tensor(n_rel), k).tolist()


def test_recall_precision_hit_by_hand():
    # user 0: relevant at ranks 1 and 3 of 4 relevant; user 1: no hit; user 2: hit at rank 2, 1 relevant
    hits = [[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]]
    n_rel = [4, 2, 1]
    assert _run("recall", hits, n_rel, 3) == pytest.approx([2 / 4, 0.0, 1.0])
    assert _run("recall", hits, n_rel, 1) == pytest.approx([1 / 4, 0.0, 0.0])
    assert _run("precision", hits, n_rel, 4) == pytest.approx([2 / 4, 0.0, 1 / 4])
    assert _run("hit", hits, n_rel, 1) == pytest.approx([1.0, 0.0, 0.0])
    assert _run("hit", hits, n_rel, 2) == pytest.approx([1.0, 0.0, 1.0])


def test_ndcg_by_hand_including_fewer_relevant_than_k():
    hits = [[1, 0, 1, 0], [0, 1, 0, 0]]
    n_rel = [4, 1]
    # user 0 @3: dcg = 1/log2(2) + 1/log2(4) = 1.5; idcg over min(4,3)=3 items
    idcg0 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    # user 1 @3: dcg = 1/log2(3); one relevant item -> idcg = 1
    assert _run("ndcg", hits, n_rel, 3) == pytest.approx([1.5 / idcg0, 1 / math.log2(3)])


def test_map_by_hand():
    hits = [[1, 0, 1, 0], [0, 1, 0, 0]]
    n_rel = [4, 1]
    # user 0 @4: (P@1*1 + P@3*1) / min(4,4) = (1 + 2/3) / 4
    # user 1 @4: (P@2) / 1 = 1/2
    assert _run("map", hits, n_rel, 4) == pytest.approx([(1 + 2 / 3) / 4, 0.5])
    # @2 for user 0: only rank 1 counts, divided by min(4, 2) = 2
    assert _run("map", hits, n_rel, 2)[0] == pytest.approx(0.5)


def test_perfect_ranking_scores_one():
    hits = np.ones((3, 5), dtype=bool)
    for name in ("recall", "ndcg", "map", "hit"):
        assert _run(name, hits, [5, 5, 5], 5) == pytest.approx([1.0, 1.0, 1.0])


@pytest.mark.parametrize("spec", ["recall", "foo@10", "recall@0", "ndcg@x"])
def test_bad_metric_specs(spec):
    with pytest.raises(ConfigError):
        parse_metric(spec)


def test_parse_metric():
    assert parse_metric("NDCG@20") == ("ndcg", 20)
