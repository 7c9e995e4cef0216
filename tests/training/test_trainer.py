"""The trainer: loss goes down, seeded reruns are identical, resume equals uninterrupted."""

import json

import pytest
import torch

from cliper.config import load_config
from cliper.training.runner import train_grid, train_run
from cliper.testing import tiny_dataset
from cliper.testing import write_inter as _write_inter


@pytest.fixture
def inter(tmp_path):
    return _write_inter(tiny_dataset(n_users=60, n_items=40, per_user=10, seed=1), tmp_path / "tiny.inter")


def _cfg(inter, *extra):
    return load_config(overrides=[f"dataset.path={inter}", "model.name=lightgcn", "train.batch_size=64",
                                  "train.epochs=6", "train.patience=50", "eval.batch_size=16", *extra])


def test_seeded_runs_are_identical(inter, tmp_path):
    a = train_run(_cfg(inter), tmp_path / "a", progress=False)
    b = train_run(_cfg(inter), tmp_path / "b", progress=False)
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    c = train_run(_cfg(inter, "seed=7"), tmp_path / "c", progress=False)
    assert c["valid"] != a["valid"]


def test_loss_decreases_and_logs_are_written(inter, tmp_path):
    m = train_run(_cfg(inter, "train.learning_rate=0.01"), tmp_path / "r", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "r" / "epochs.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert (tmp_path / "r" / "config.yaml").is_file() and (tmp_path / "r" / "best.pt").is_file()
    assert m["valid"]["recall@20"] == max(r["valid"]["recall@20"] for r in rows)
    best = next(r for r in rows if r["epoch"] == m["best_epoch"])
    assert best["valid"] == m["valid"]


def test_resume_matches_uninterrupted_run(inter, tmp_path):
    full = train_run(_cfg(inter), tmp_path / "full", progress=False)
    # "interrupt": train 3 epochs, then continue the same run to 6 from its checkpoint
    part = tmp_path / "part"
    train_run(_cfg(inter, "train.epochs=3"), part, progress=False)
    (part / "metrics.json").unlink()  # as if killed before finishing
    cfg = _cfg(inter)
    import yaml
    (part / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    resumed = train_run(cfg, part, resume=True, progress=False)
    assert resumed["test"] == full["test"]
    assert resumed["best_epoch"] == full["best_epoch"]
    lines = (part / "epochs.jsonl").read_text().splitlines()
    assert len(lines) == 6


def test_early_stopping_stops(inter, tmp_path):
    m = train_run(_cfg(inter, "train.epochs=200", "train.patience=2", "train.learning_rate=0.05"),
                  tmp_path / "r", progress=False)
    assert m["stopped_early"] and m["epochs_run"] < 200
    assert m["epochs_run"] - m["best_epoch"] == 2


def test_refuses_to_overwrite_finished_run(inter, tmp_path):
    from cliper.errors import CliperError

    train_run(_cfg(inter, "train.epochs=1"), tmp_path / "r", progress=False)
    with pytest.raises(CliperError, match="already holds"):
        train_run(_cfg(inter, "train.epochs=1"), tmp_path / "r", progress=False)


def _finished(run_dir, valid: float, test: float) -> dict:
    """What a finished grid point leaves behind: its metrics.json (for fake train_run calls)."""
    m = {"valid": {"recall@20": valid}, "test": {"recall@20": test}, "best_epoch": 1}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(m))
    return m


def test_grid_winner_chosen_on_validation_not_test(inter, tmp_path, monkeypatch):
    """Plant a grid point that is best on test but worse on validation: it must not win."""
    import cliper.training.runner as runner

    def fake_train_run(cfg, run_dir, **kw):  # point 1 is planted: best on test, worse on validation
        return _finished(run_dir, 0.1, 0.9) if cfg.model["n_layers"] == 1 else _finished(run_dir, 0.5, 0.2)

    monkeypatch.setattr(runner, "train_run", fake_train_run)
    cfg = _cfg(inter, "grid={model.n_layers: [1, 2]}")
    win = train_grid(cfg, tmp_path / "g", progress=False)
    assert win["grid"]["params"] == {"model.n_layers": 2}
    assert win["test"]["recall@20"] == 0.2


def test_per_user_test_metrics_average_to_reported_metrics(inter, tmp_path):
    from cliper.training.runner import load_per_user

    m = train_run(_cfg(inter, "train.epochs=2"), tmp_path / "r", progress=False)
    users, per_user = load_per_user(tmp_path / "r")
    assert users.size == 60
    for key in ("recall@20", "ndcg@10", "map@50"):
        assert per_user[key].mean() == pytest.approx(m["test"][key], rel=1e-5)


def test_grid_skips_diverged_and_refused_points(inter, tmp_path, monkeypatch):
    """A diverging point (NaN loss) and a refused combination are recorded and left out of the
    selection, as the reference toolbox skips NaN runs; a re-run reads the records back."""
    from cliper.errors import ConfigError
    from cliper.training import runner

    calls = []

    def fake_train_run(cfg, run_dir, resume=False, progress=True, data=None, features=None):
        calls.append(cfg.model["n_layers"])
        if cfg.model["n_layers"] == 2:
            raise FloatingPointError("loss became nan at epoch 3; lower the learning rate")
        if cfg.model["n_layers"] == 3:
            raise ConfigError("model 'lightgcn' refuses this combination")
        return _finished(run_dir, 0.1, 0.3)

    monkeypatch.setattr(runner, "train_run", fake_train_run)
    cfg = _cfg(inter, "grid={model.n_layers: [1, 2, 3]}")
    win = train_grid(cfg, tmp_path / "g", progress=False)
    assert win["grid"]["params"] == {"model.n_layers": 1}
    assert win["grid"]["n_points"] == 3 and win["grid"]["n_skipped"] == 2
    summary = json.loads((tmp_path / "g" / "grid.json").read_text())
    assert [s["skipped"] for s in summary["skipped"]] == ["diverged", "refused"]
    assert "nan" in summary["skipped"][0]["reason"]
    calls.clear()
    train_grid(cfg, tmp_path / "g", resume=True, progress=False)
    assert 2 not in calls and 3 not in calls  # the records are read back, not retrained


def test_grid_where_every_point_is_skipped_fails_in_one_line(inter, tmp_path, monkeypatch):
    from cliper.errors import CliperError
    from cliper.training import runner

    def diverge(*a, **k):
        raise FloatingPointError("loss became inf at epoch 1; lower the learning rate")

    monkeypatch.setattr(runner, "train_run", diverge)
    with pytest.raises(CliperError, match="every one of the 2 grid points was skipped"):
        train_grid(_cfg(inter, "grid={model.n_layers: [1, 2]}"), tmp_path / "g", progress=False)
