"""The side-by-side harness (benchmarks/independent/harness.py) is itself checked: its metrics on
a hand-computed case, its early-stopping rule, its sampler, and agreement with cliper's own
Evaluator (two implementations written apart) on the same scores."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "independent"))
import harness  # noqa: E402


def test_ranking_metrics_hand_computed():
    # one user, 6 items; item 0 is a train item (masked); truth {2, 5}; scores rank 0 > 1 > 2 > 3 > 4 > 5
    scores = np.array([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    train = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0]]))
    truth = sp.csr_matrix(np.array([[0, 0, 1, 0, 0, 1]]))
    recall, ndcg = harness.ranking_metrics(scores, train, truth, k=2)
    # top-2 after masking: items 1, 2 -> one hit of two at rank 2
    assert recall[0] == pytest.approx(0.5)
    assert ndcg[0] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    recall, ndcg = harness.ranking_metrics(scores, train, truth, k=5)
    assert recall[0] == pytest.approx(1.0)  # items 1..5: both hits, at ranks 2 and 5
    assert ndcg[0] == pytest.approx((1 / np.log2(3) + 1 / np.log2(6)) / (1 + 1 / np.log2(3)))


def test_reference_stop_rounds_and_counts_like_mmrec():
    # 0.30004 rounds to 0.3000: not an improvement over 0.3000; patience 2 stops after two such evaluations
    best, run = harness.reference_stop([0.1, 0.3, 0.30004, 0.29, 0.5], patience=2)
    assert (best, run) == (1, 4)
    best, run = harness.reference_stop([0.1, 0.3, 0.30006, 0.29], patience=2)
    assert (best, run) == (2, 4)  # 0.30006 rounds to 0.3001 > 0.3000
    assert harness.reference_stop([0.2, 0.1], patience=5) == (0, 2)  # never stopped: all epochs run


def test_sampler_draws_train_items_outside_the_users_history():
    rng = np.random.default_rng(0)
    dense = (rng.random((40, 30)) < 0.3).astype(np.float32)
    dense[:, 29] = 0  # item 29 never appears in training: never a negative (MMRec samples train items)
    train = sp.csr_matrix(dense)
    s = harness.ReferenceSampler(train, np.random.default_rng(1))
    seen = 0
    for u, p, n in s.epoch(64):
        u, p, n = u.numpy(), p.numpy(), n.numpy()
        assert np.all(dense[u, p] == 1) and np.all(dense[u, n] == 0)
        assert not np.any(n == 29)
        seen += u.size
    assert seen == train.nnz  # every train pair once per epoch


class _RandomScores(torch.nn.Module):
    def __init__(self, n_users, n_items):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.u = torch.randn(n_users, 8, generator=g)
        self.i = torch.randn(n_items, 8, generator=g)

    def scores(self, users):
        return self.u[users] @ self.i.T

    def full_sort_predict(self, users):
        return self.scores(users)


def test_harness_evaluator_agrees_with_cliper_evaluator(tmp_path):
    from cliper.evaluation.evaluator import Evaluator

    rng = np.random.default_rng(0)
    lines = ["userID\titemID\tx_label"]
    for u in range(60):
        items = rng.choice(50, size=9, replace=False)
        lines += [f"{u}\t{i}\t{label}" for i, label in zip(items, [0] * 6 + [1, 1, 2])]
    (tmp_path / "toy.inter").write_text("\n".join(lines) + "\n")
    inputs = harness.load_inputs(tmp_path, features="random", image_dim=0, text_dim=0)
    from cliper.data.interactions import load_inter

    data = load_inter(tmp_path / "toy.inter")
    model = _RandomScores(inputs.n_users, inputs.n_items)
    ours = harness.evaluate(model, inputs, "valid")
    theirs = Evaluator(data, topk=(20,), metrics=("recall", "ndcg")).evaluate(model, "valid")
    assert ours["recall@20"] == pytest.approx(theirs["recall@20"], abs=1e-9)
    assert ours["ndcg@20"] == pytest.approx(theirs["ndcg@20"], abs=1e-9)


class _Frozen(torch.nn.Module):
    """Scores that never change: the first evaluation is the best, every later one ties."""

    def __init__(self, inputs, seed):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.n_items = inputs.n_items

    def pre_epoch(self):
        pass

    def loss(self, u, p, n):
        return (self.w ** 2).sum()

    def scores(self, users):
        return torch.arange(self.n_items, dtype=torch.float32).repeat(len(users), 1)


def test_independent_loop_stops_at_the_patience_th_flat_evaluation(tmp_path):
    rng = np.random.default_rng(1)
    lines = ["userID\titemID\tx_label"]
    for u in range(30):
        items = rng.choice(40, size=6, replace=False)
        lines += [f"{u}\t{i}\t{label}" for i, label in zip(items, [0] * 4 + [1, 2])]
    (tmp_path / "toy.inter").write_text("\n".join(lines) + "\n")
    inputs = harness.load_inputs(tmp_path, features="random", image_dim=0, text_dim=0)
    out = harness.fit_independent(_Frozen, inputs, seed=0, epochs=50, patience=3)
    assert out["best_epoch"] == 1 and out["epochs_run"] == 4 and out["stopped_early"]
    assert len(out["valid_curve"]) == 4  # no epoch trained past the stopping one


def test_a_one_sided_run_keeps_its_rows_beside_a_finished_comparison(tmp_path, capsys):
    """``--sides independent`` writes ``<name>.independent.json``; the comparison ``<name>.json`` stays."""
    from cliper.testing import tiny_dataset, write_inter

    data_dir = tmp_path / "tiny"
    data_dir.mkdir()
    write_inter(tiny_dataset(n_users=40, n_items=30, per_user=6, seed=2), data_dir / "tiny.inter")
    import side_by_side

    finished = tmp_path / "results" / "side_by_side" / "sbs.json"
    finished.parent.mkdir(parents=True)
    finished.write_text('{"summary": "kept"}', encoding="utf-8")
    side_by_side.main(["--model", "bpr", "--dataset", str(data_dir), "--sides", "independent", "--seeds", "1",
                       "--epochs", "2", "--features", "random", "--image-dim", "0", "--text-dim", "0",
                       "--name", "sbs", "--results-dir", str(tmp_path / "results")])
    import json

    one = json.loads((finished.parent / "sbs.independent.json").read_text(encoding="utf-8"))
    assert [r["seed"] for r in one["rows"]] == [1] and "independent" in one["rows"][0]
    assert "summary" not in one
    assert json.loads(finished.read_text(encoding="utf-8")) == {"summary": "kept"}
