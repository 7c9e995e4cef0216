"""View ranks by similarity: counts on a hand-made matrix, ties, missing images, SA weights, the CLI."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cliper.cli.main import app
from cliper.experiments.view_importance import rank_views, sa_weights, view_importance
from cliper.fusion import SimilarityAttentionFusion

from exp_helpers import write_store

SIM = np.array([
    [0.9, 0.1, 0.5],  # ranks: a=1, b=3, c=2
    [0.2, 0.8, 0.4],  # a=3, b=1, c=2
    [0.7, 0.6, 0.1],  # a=1, b=2, c=3
    [0.3, 0.3, 0.3],  # all tied: view order -> a=1, b=2, c=3
    [0.0, 0.9, 0.95],  # item without image (masked out below)
])


def test_rank_views_by_hand_with_stable_ties():
    r = rank_views(SIM)
    assert r[:4].tolist() == [[1, 3, 2], [3, 1, 2], [1, 2, 3], [1, 2, 3]]


def test_counts_and_weighted_sum_by_hand():
    mask = np.array([True, True, True, True, False])
    imp = view_importance(SIM, ["a", "b", "c"], mask)
    # view x rank
    assert imp.counts.tolist() == [[3, 0, 1], [1, 2, 1], [0, 2, 2]]
    assert imp.weighted_sum.tolist() == [1 * 3 + 3 * 1, 1 + 2 * 2 + 3, 2 * 2 + 3 * 2]
    assert imp.n_items == 4 and imp.n_excluded == 1
    assert imp.order == ["a", "b", "c"]
    assert imp.counts.sum(axis=0).tolist() == [4, 4, 4]  # each rank held by exactly one view per item


def test_sa_weights_match_the_fusion_layer():
    w = sa_weights(SIM, tau=0.1)
    ref = SimilarityAttentionFusion(3, 4, tau=0.1).weights(torch.zeros(3, 5, 4), torch.tensor(SIM, dtype=torch.float32))
    assert np.allclose(w, ref.numpy(), atol=1e-6)
    assert np.allclose(w.sum(axis=1), 1.0)


def test_analyze_views_cli_writes_tables_and_valid_pngs(tmp_path):
    store = write_store(tmp_path / "store", 30, missing=(3, 7), seed=2)
    out = tmp_path / "views"
    res = CliRunner().invoke(app, ["analyze", "views", "--store", str(store), "--output", str(out), "--tau", "0.2"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "summary.json").read_text())
    assert doc["n_items"] == 28 and doc["n_excluded"] == 2
    sim = np.load(store / "similarity.npy")
    mask = np.load(store / "image_mask.npy")
    expected = view_importance(sim, doc["views"], mask)
    assert doc["counts"] == expected.counts.tolist()
    import csv

    rows = list(csv.DictReader(open(out / "view_importance.csv")))
    assert [int(r["weighted_sum"]) for r in rows] == expected.weighted_sum.tolist()
    att = list(csv.DictReader(open(out / "attention_weights.csv")))
    w = sa_weights(sim[mask], 0.2)
    assert [float(r["mean"]) for r in att] == pytest.approx(w.mean(axis=0).tolist())
    for png in ("view_importance.png", "attention_weights.png"):
        with Image.open(out / png) as im:
            im.verify()
    assert "weighted sum" in (out / "view_importance.md").read_text()


def test_analyze_views_rejects_unknown_view(tmp_path):
    from cliper.errors import ConfigError

    store = write_store(tmp_path / "store", 10)
    res = CliRunner().invoke(app, ["analyze", "views", "--store", str(store), "--output", str(tmp_path / "o"),
                                   "--views", "title,colour"])
    assert isinstance(res.exception, ConfigError) and "colour" in str(res.exception)
