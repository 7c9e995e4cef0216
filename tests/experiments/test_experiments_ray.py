"""`--engine ray` for experiment grids: every training a Ray task, the same run folders and tables."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from cliper.cli.main import app

pytestmark = pytest.mark.ray

# 1 backbone x {vanilla, cliper} x 1 seed x a 2-point grid = 4 real (tiny) trainings per engine
ARGS = ["-b", "vbpr", "--seeds", "0", "--epochs", "2", "-o", "model.embedding_dim=16", "-o", "train.batch_size=64",
        "-o", "eval.batch_size=32", "-g", "model.reg_weight=[1e-4,1e-2]", "-q"]


def _compare(ds, store, out, *extra):
    res = CliRunner().invoke(app, ["compare", "-d", f"tiny={ds}", "--store", f"tiny={store}", "--output", str(out),
                                   *ARGS, *extra])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def _runs(out):
    found = {}
    for m in sorted(out.rglob("metrics.json")):
        d = json.loads(m.read_text())
        found[str(m.parent.relative_to(out))] = (d["valid"], d["test"], d["best_epoch"], (d.get("grid") or {}).get("run"))
    return found


def _table(out):
    """compare.csv with its run-folder columns made relative to the experiment folder."""
    rows = list(csv.DictReader(open(out / "compare.csv", encoding="utf-8")))
    for r in rows:
        for k in [k for k in r if k.endswith("_runs")]:
            r[k] = r[k].replace(str(out), "OUT")
    return rows


def test_compare_on_ray_gives_the_local_table(ray_local, tiny_exp, tmp_path):
    ds, store = tiny_exp
    _compare(ds, store, tmp_path / "local")
    _compare(ds, store, tmp_path / "ray", "--engine", "ray", "--workers", "2", "--cpus-per-worker", "1")
    loc, ray_ = tmp_path / "local", tmp_path / "ray"
    assert (loc / "compare.md").read_text() == (ray_ / "compare.md").read_text()
    assert _table(loc) == _table(ray_)
    assert (loc / "results.csv").read_text() == (ray_ / "results.csv").read_text()
    runs = _runs(loc)
    assert len(runs) == 2 + 4  # two grid folders (their winners) and their four points
    assert runs == _runs(ray_)  # seeded: every run bit-identical, same winners (chosen on validation)
    exp = json.loads((ray_ / "experiment.json").read_text())
    assert [u["status"] for u in exp["units"]] == ["trained", "trained"]
    # a re-run on Ray trains nothing
    _compare(ds, store, ray_, "--engine", "ray")
    exp = json.loads((ray_ / "experiment.json").read_text())
    assert [u["status"] for u in exp["units"]] == ["skipped", "skipped"]


def test_failed_runs_are_reported_and_a_rerun_trains_only_them(ray_local, tiny_exp, tmp_path, monkeypatch):
    """Dataset 'bad' has a store of the wrong size (fails inside its trainings); the worker of one
    good run is killed right after it finishes. Ray re-runs that job (reading the finished run back),
    the failures are listed in one error, and a re-run after the fix trains only the failed runs."""
    from exp_helpers import write_store

    from cliper.experiments.runner import FAULT_ENV

    ds, store = tiny_exp
    small = write_store(tmp_path / "small", 30, seed=2)  # the dataset has 40 items
    marker = tmp_path / "killed.txt"
    monkeypatch.setenv(FAULT_ENV, f"runs/good/vbpr/vanilla/seed0:{marker}")
    out = tmp_path / "out"
    args = ["compare", "-d", f"good={ds}", "-d", f"bad={ds}", "--store", f"good={store}", "--store", f"bad={small}",
            "--output", str(out), "-b", "vbpr", "--seeds", "0", "--epochs", "1", "-o", "model.embedding_dim=16", "-q",
            "--engine", "ray", "--workers", "2"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0 and "2 of 4 runs failed" in str(res.exception), res.output + repr(res.exception)
    assert "bad/vbpr/vanilla/seed0" in str(res.exception) and "30 items" in str(res.exception)
    assert marker.is_file(), "the fault hook did not fire"
    status = {(u["dataset"], u["variant"]): u["status"] for u in json.loads((out / "experiment.json").read_text())["units"]}
    assert status == {("good", "vanilla"): "trained", ("good", "cliper"): "trained",
                      ("bad", "vanilla"): "failed", ("bad", "cliper"): "failed"}
    good = (out / "runs/good/vbpr/vanilla/seed0/metrics.json").read_text()

    write_store(small, 40, seed=2)  # fix the input, run the same command again
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    status = {(u["dataset"], u["variant"]): u["status"] for u in json.loads((out / "experiment.json").read_text())["units"]}
    assert status == {("good", "vanilla"): "skipped", ("good", "cliper"): "skipped",
                      ("bad", "vanilla"): "trained", ("bad", "cliper"): "trained"}
    assert (out / "runs/good/vbpr/vanilla/seed0/metrics.json").read_text() == good


def test_train_search_on_ray_picks_the_local_winner(ray_local, tiny_exp, tmp_path):
    """`cliper train -g ... --engine ray`: every grid point a Ray task; grid.json and the winner as locally."""
    ds, store = tiny_exp
    args = ["train", "-d", str(ds), "-m", "vbpr", "-o", f"features.store={store}", "-o", "train.epochs=2",
            "-o", "model.embedding_dim=16", "-g", "model.reg_weight=[1e-4,1e-2,1.0]", "-q"]
    for name, extra in (("local", []), ("ray", ["--engine", "ray", "--workers", "2"])):
        res = CliRunner().invoke(app, [*args, "--output", str(tmp_path / name), *extra])
        assert res.exit_code == 0, res.output + repr(res.exception)
    grids = {n: json.loads((tmp_path / n / "grid.json").read_text()) for n in ("local", "ray")}
    assert grids["local"] == grids["ray"] and len(grids["ray"]["runs"]) == 3
    assert grids["ray"]["selected_by"] == "valid recall@20"
    best = max(grids["ray"]["runs"], key=lambda r: r["valid"]["recall@20"])
    assert grids["ray"]["winner"] == best
