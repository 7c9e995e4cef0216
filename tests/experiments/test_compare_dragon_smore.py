"""`cliper compare` accepts DRAGON and SMORE (vanilla vs CLIPER features, one short run each)."""

import csv

import pytest
import yaml
from typer.testing import CliRunner

from cliper.cli.main import app

FAST = ["-o", "train.batch_size=64", "-o", "eval.batch_size=32"]


@pytest.mark.parametrize("backbone, extra", [
    ("dragon", {"model.user_k": 5}),
    ("smore", {"model.image_knn_k": 5, "model.text_knn_k": 5}),
])
def test_compare_runs_the_backbone_on_both_feature_sets(tiny_exp, tmp_path, backbone, extra):
    ds, store = tiny_exp
    spec = tmp_path / "exp.yaml"
    spec.write_text(yaml.safe_dump({
        "name": f"tiny-{backbone}",
        "datasets": {"tiny": {"path": str(ds), "store": str(store)}},
        "backbones": [backbone], "seeds": [0],
        "overrides": {"train.epochs": 1, "model.embedding_dim": 16, **extra},
    }))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["compare", "--spec", str(spec), "--output", str(out), "-q", *FAST])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out / "compare.csv", encoding="utf-8")))
    assert rows and {r["backbone"] for r in rows} == {backbone}
    for fs in ("vanilla", "cliper"):
        assert (out / "runs" / "tiny" / backbone / fs / "seed0" / "metrics.json").is_file()
