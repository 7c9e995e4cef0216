"""`cliper runs plot` and `cliper runs summary` on plain `cliper train` folders, grids included."""

import csv
import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from cliper.cli.main import app

from exp_helpers import install_fake_training


def test_runs_plot_and_summary_on_a_trained_run(tiny_exp, tmp_path):
    ds, store = tiny_exp
    run = tmp_path / "r"
    res = CliRunner().invoke(app, ["train", "-d", str(ds), "-m", "vbpr", "--output", str(run), "-q",
                                   "-o", "train.epochs=3", "-o", "train.batch_size=64",
                                   "-o", f"features.store={store}"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["runs", "plot", str(run)])
    assert res.exit_code == 0, res.output
    with Image.open(run / "curves.png") as im:
        im.verify()
        assert im.size[0] > 300
    res = CliRunner().invoke(app, ["runs", "summary", str(tmp_path), "--csv", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    (row,) = list(csv.DictReader(open(tmp_path / "s.csv")))
    m = json.loads((run / "metrics.json").read_text())
    assert row["model"] == "vbpr" and row["features"].startswith("store:store sa")
    assert int(row["best_epoch"]) == m["best_epoch"]
    assert float(row["valid_recall@20"]) == pytest.approx(m["valid"]["recall@20"])


def test_summary_lists_grid_winner_only_unless_all(tiny_exp, tmp_path, monkeypatch):
    from cliper.config import load_config
    from cliper.training.runner import train_grid

    install_fake_training(monkeypatch, lambda cfg: (cfg.model["reg_weight"], 0.1))
    ds, _ = tiny_exp
    cfg = load_config(overrides=[f"dataset.path={ds}", "model.name=bpr", "grid={model.reg_weight: [0.1, 0.2, 0.3]}"])
    train_grid(cfg, tmp_path / "g", progress=False)
    res = CliRunner().invoke(app, ["runs", "summary", str(tmp_path / "g")])
    assert res.exit_code == 0 and res.output.count("bpr") == 1 and "grid/002" in res.output
    res = CliRunner().invoke(app, ["runs", "summary", str(tmp_path / "g"), "--all"])
    assert res.output.count("bpr") == 4


def test_runs_plot_without_epoch_log_is_an_error(tmp_path):
    from cliper.errors import CliperError

    res = CliRunner().invoke(app, ["runs", "plot", str(tmp_path)])
    assert isinstance(res.exception, CliperError) and "epochs.jsonl" in str(res.exception)
