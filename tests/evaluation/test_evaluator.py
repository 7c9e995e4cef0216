"""The full-ranking evaluator: masking, chunking, averaging, top-k export."""

import math

import numpy as np
import pytest
import torch

from cliper.data.interactions import InteractionData, Split
from cliper.evaluation import Evaluator


def _data():
    # 3 users, 6 items. train: u0 {0,1}, u1 {2}, u2 {5}; valid: u0 {2}, u1 {0}, u2 {}; test: u0 {3}, u1 {4}, u2 {0,1}
    def s(pairs):
        a = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        return Split(a[:, 0].copy(), a[:, 1].copy())

    return InteractionData(
        n_users=3, n_items=6,
        train=s([(0, 0), (0, 1), (1, 2), (2, 5)]),
        valid=s([(0, 2), (1, 0)]),
        test=s([(0, 3), (1, 4), (2, 0), (2, 1)]),
    )


class FixedScores:
    """Scores = item id reversed (item 0 best) for everyone, recording requested users."""

    def __init__(self, n_items):
        self.n_items = n_items
        self.calls = []

    def full_sort_predict(self, users):
        self.calls.append(users.tolist())
        return torch.arange(self.n_items, 0, -1, dtype=torch.float32).repeat(len(users), 1)


def test_train_items_are_masked_and_metrics_match_hand_computation():
    data = _data()
    ev = Evaluator(data, topk=[1, 2], metrics=["recall", "ndcg", "hit"], batch_size=2)
    m = ev.evaluate(FixedScores(6), "test")
    # ranking without train items: u0: 2,3,4,5 -> test {3} at rank 2
    # u1: 0,1,3,4,5 -> test {4} at rank 4 ; u2: 0,1,2,3,4 -> test {0,1} at ranks 1,2
    assert m["recall@1"] == pytest.approx((0 + 0 + 0.5) / 3)
    assert m["recall@2"] == pytest.approx((1 + 0 + 1) / 3)
    assert m["hit@1"] == pytest.approx(1 / 3)
    nd2_u0 = 1 / math.log2(3)
    assert m["ndcg@2"] == pytest.approx((nd2_u0 + 0 + 1.0) / 3)


def test_valid_averages_only_over_users_with_valid_items():
    data = _data()
    ev = Evaluator(data, topk=[1], metrics=["recall"])
    scorer = FixedScores(6)
    m = ev.evaluate(scorer, "valid")
    # u0: ranking 2,3,.. -> valid {2} rank 1; u1: 0 is best -> valid {0} rank 1; u2 has no valid items
    assert m["recall@1"] == pytest.approx(1.0)
    assert sorted(sum(scorer.calls, [])) == [0, 1]


def test_chunk_size_does_not_change_results(tiny):
    torch.manual_seed(0)
    table = torch.randn(tiny.n_users, tiny.n_items)

    class Random:
        def full_sort_predict(self, users):
            return table[users].clone()

    a = Evaluator(tiny, batch_size=7).evaluate(Random(), "test")
    b = Evaluator(tiny, batch_size=1000).evaluate(Random(), "test")
    assert a == pytest.approx(b)


def test_k_larger_than_item_count_pads_with_misses():
    data = _data()
    m = Evaluator(data, topk=[50], metrics=["recall", "precision"]).evaluate(FixedScores(6), "test")
    assert m["recall@50"] == pytest.approx(1.0)
    assert m["precision@50"] == pytest.approx((1 + 1 + 2) / 50 / 3)


def test_top_items_never_contain_train_items(tiny):
    table = torch.randn(tiny.n_users, tiny.n_items)

    class Random:
        def full_sort_predict(self, users):
            return table[users].clone()

    users, top = Evaluator(tiny, batch_size=9).top_items(Random(), "test", 5)
    train = tiny.train_matrix
    assert top.shape == (users.size, 5)
    for u, items in zip(users, top):
        assert not set(items.tolist()) & set(train.indices[train.indptr[u]:train.indptr[u + 1]].tolist())


def test_wrong_score_shape_is_reported():
    data = _data()

    class Bad:
        def full_sort_predict(self, users):
            return torch.zeros(len(users), 5)

    with pytest.raises(RuntimeError, match="expected"):
        Evaluator(data).evaluate(Bad(), "test")


def test_hits_by_key_lookup_match_a_per_user_set_computation():
    """Random scores on a random graph: recall@K and hit@K equal a plain per-user set computation."""
    from cliper.testing import tiny_dataset

    data = tiny_dataset(n_users=50, n_items=30, per_user=9, seed=3)
    g = torch.Generator().manual_seed(0)
    table = torch.randn(data.n_users, data.n_items, generator=g)

    class Random:
        def full_sort_predict(self, users):
            return table[users].clone()

    res = Evaluator(data, topk=(5, 10), metrics=("recall", "hit"), batch_size=7).evaluate(Random(), "test")
    train, test = data.matrix("train").tolil().rows, data.matrix("test").tolil().rows
    rec, hit = {5: [], 10: []}, {5: [], 10: []}
    for u in range(data.n_users):
        if not test[u]:
            continue
        ranked = [i for i in torch.argsort(table[u], descending=True).tolist() if i not in set(train[u])]
        for k in (5, 10):
            n = len(set(ranked[:k]) & set(test[u]))
            rec[k].append(n / len(test[u]))
            hit[k].append(float(n > 0))
    for k in (5, 10):
        assert res[f"recall@{k}"] == pytest.approx(np.mean(rec[k]))
        assert res[f"hit@{k}"] == pytest.approx(np.mean(hit[k]))
    assert 0 < res["recall@10"] < 1
