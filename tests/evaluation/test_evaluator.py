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


# -- the buffered scoring path and the hit lookup (issue 13: evaluation at the bare ops' cost) --------------


def _dense_reference(users_e: np.ndarray, items_e: np.ndarray, data, split: str, k: int):
    """Top-k lists and recall@k with plain numpy in float64: full score matrix, train items -inf."""
    scores = users_e.astype(np.float64) @ items_e.astype(np.float64).T
    scores[data.train_matrix.toarray() > 0] = -np.inf
    truth = data.matrix(split).toarray() > 0
    users = np.flatnonzero(truth.sum(1) > 0)
    top = np.argsort(-scores[users], axis=1, kind="stable")[:, :k]
    recall = np.array([truth[u, t].sum() / truth[u].sum() for u, t in zip(users, top)])
    return users, top, recall


@pytest.mark.parametrize("tiles", [None, (3, 4)])  # default tiles (one per chunk here), and many small ones
def test_a_recommender_is_ranked_from_its_score_embeddings_once_per_pass_and_matches_dense_numpy(tiles, monkeypatch):
    import cliper.evaluation.evaluator as E
    import cliper.testing.backbones as C

    if tiles:
        monkeypatch.setattr(E, "TILE_ROWS", tiles[0])
        monkeypatch.setattr(E, "TILE_COLS", tiles[1])

    model = C.build("lightgcn")
    C.train_steps(model, 1)
    model.eval()
    data = C.data()
    with torch.no_grad():
        users_e, items_e = (t.numpy().copy() for t in model.score_embeddings())
    calls = {"n": 0}
    original = model.score_embeddings

    def counted():
        calls["n"] += 1
        return original()

    model.score_embeddings = counted  # an instance attribute: full_sort_predict stays the base one
    ev = Evaluator(data, topk=[5], metrics=["recall"], batch_size=7)  # several chunks
    users, top = ev.top_items(model, "valid", 5)
    assert calls["n"] == 1  # one pass: the pair is read once, not per chunk
    ref_users, ref_top, ref_recall = _dense_reference(users_e, items_e, data, "valid", 5)
    np.testing.assert_array_equal(users, ref_users)
    np.testing.assert_array_equal(top, ref_top)
    per_user = ev.evaluate_per_user(model, "valid")[1]["recall@5"]
    np.testing.assert_allclose(per_user, ref_recall, rtol=1e-12)


def test_an_overridden_full_sort_predict_is_what_ranks():
    import cliper.testing.backbones as C

    model = C.build("bpr")
    model.eval()
    reversed_items = torch.arange(C.N_ITEMS, 0, -1, dtype=torch.float32)
    type_ = type(model)
    cls = type(type_.__name__ + "Fixed", (type_,), {"full_sort_predict": lambda self, u: reversed_items.repeat(len(u), 1)})
    model.__class__ = cls
    users, top = Evaluator(C.data(), topk=[3], batch_size=5).top_items(model, "valid", 3)
    train = C.data().train_matrix.toarray() > 0
    for u, t in zip(users, top):  # the best 3 items by that fixed order, train items skipped
        np.testing.assert_array_equal(t, [i for i in range(C.N_ITEMS) if not train[u, i]][:3])


def test_hit_matrix_matches_a_set_lookup_with_unsorted_and_empty_truth():
    from cliper.evaluation.evaluator import _hit_matrix

    rng = np.random.default_rng(3)
    n_items, b, k = 50, 9, 6
    top = torch.from_numpy(np.stack([rng.choice(n_items, k, replace=False) for _ in range(b)]))
    pairs = [(r, c) for r in range(b) if r != 4 for c in rng.choice(n_items, 5, replace=False)]
    rng.shuffle(pairs)  # the lookup must not rely on the CSR order
    rows = torch.tensor([r for r, _ in pairs])
    cols = torch.tensor([int(c) for _, c in pairs])
    truth = {(r, int(c)) for r, c in pairs}
    want = torch.tensor([[(r, int(top[r, j])) in truth for j in range(k)] for r in range(b)])
    assert torch.equal(_hit_matrix(top, (rows, cols), n_items), want)
    assert not want[4].any()
    empty = _hit_matrix(top, (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)), n_items)
    assert empty.shape == top.shape and not empty.any()
