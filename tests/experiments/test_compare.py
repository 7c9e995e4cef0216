"""`cliper compare`: the table re-derived from its run folders, resume, and no selection on test."""

import csv
import hashlib
import json
import math

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cliper.cli.main import app
from cliper.experiments.compare import run_compare
from cliper.experiments.spec import spec_from_options
from cliper.training.runner import load_per_user

from exp_helpers import install_fake_training

FAST = ["-o", "train.batch_size=64", "-o", "eval.batch_size=32"]


def _rows(path):
    return list(csv.DictReader(open(path, encoding="utf-8")))


def _cell(rows, backbone, metric, k):
    return next(r for r in rows if r["backbone"] == backbone and r["metric"] == metric and int(r["k"]) == k)


def test_compare_end_to_end_table_matches_run_folders(tiny_exp, tmp_path):
    ds, store = tiny_exp
    spec = tmp_path / "exp.yaml"  # paths relative to the spec file
    spec.write_text(yaml.safe_dump({
        "name": "tiny-compare",
        "datasets": {"tiny": {"path": "tiny", "store": "store"}},
        "backbones": ["vbpr"], "seeds": [0, 1],
        "overrides": {"train.epochs": 2, "model.embedding_dim": 16},
    }))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["compare", "--spec", str(spec), "--output", str(out), "-q", *FAST])
    assert res.exit_code == 0, res.output
    rows = _rows(out / "compare.csv")
    assert {(r["metric"], int(r["k"])) for r in rows} == {(m, k) for m in ("recall", "ndcg") for k in (10, 20, 50)}

    # re-derive one cell from the run folders
    runs = {fs: [out / "runs" / "tiny" / "vbpr" / fs / f"seed{s}" for s in (0, 1)] for fs in ("vanilla", "cliper")}
    test = {fs: [json.loads((d / "metrics.json").read_text())["test"]["recall@20"] for d in ds_] for fs, ds_ in runs.items()}
    r = _cell(rows, "vbpr", "recall", 20)
    assert float(r["baseline_mean"]) == pytest.approx(np.mean(test["vanilla"]), abs=1e-12)
    assert float(r["treatment_mean"]) == pytest.approx(np.mean(test["cliper"]), abs=1e-12)
    assert float(r["treatment_std"]) == pytest.approx(np.std(test["cliper"], ddof=1), abs=1e-12)
    assert float(r["improvement_pct"]) == pytest.approx(
        (np.mean(test["cliper"]) - np.mean(test["vanilla"])) / np.mean(test["vanilla"]) * 100)
    # the paired test over users, recomputed from the per-user files
    from scipy.stats import wilcoxon

    a = np.mean([load_per_user(d)[1]["recall@20"] for d in runs["vanilla"]], axis=0)
    b = np.mean([load_per_user(d)[1]["recall@20"] for d in runs["cliper"]], axis=0)
    expected_p = 1.0 if np.all(a == b) else wilcoxon(b, a).pvalue
    assert float(r["p_users_wilcoxon"]) == pytest.approx(expected_p)
    md = (out / "compare.md").read_text()
    assert f"{100 * np.mean(test['cliper']):.2f} ± {100 * np.std(test['cliper'], ddof=1):.2f}" in md
    assert "Wilcoxon" in md and "validation" in md

    # bookkeeping: config, seed, manifest hash, code version, same embedding size on both sides
    sha = hashlib.sha256((store / "manifest.json").read_bytes()).hexdigest()
    exp = json.loads((out / "experiment.json").read_text())
    assert exp["n_finished"] == 4
    for u in exp["units"]:
        d = out / u["run_dir"]
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        m = json.loads((d / "metrics.json").read_text())
        assert cfg["seed"] == u["seed"] == m["seed"]
        assert cfg["model"]["embedding_dim"] == 16 and cfg["train"]["epochs"] == 2
        assert u["manifest_sha256"] == sha and m["code_version"]
    vanilla_cfg = yaml.safe_load((runs["vanilla"][0] / "config.yaml").read_text())
    assert vanilla_cfg["features"]["views"] == ["global"]
    # plots: the comparison and every run's curves
    for png in [out / "compare.png", *(d / "curves.png" for ds_ in runs.values() for d in ds_)]:
        with Image.open(png) as im:
            im.verify()

    # runs summary lists the four runs with the numbers of their metrics.json
    res = CliRunner().invoke(app, ["runs", "summary", str(out), "--csv", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    summ = {r["run"]: r for r in _rows(tmp_path / "s.csv")}
    assert len(summ) == 4
    d = runs["cliper"][1]
    row = summ[str(d.relative_to(out))]
    assert row["features"] == "cliper" and row["seed"] == "1"
    assert float(row["test_recall@20"]) == pytest.approx(test["cliper"][1])


def _fake_spec(tiny_exp, **kw):
    ds, store = tiny_exp
    return spec_from_options(None, datasets=[f"tiny={ds}"], stores=[str(store)], backbones=["bpr", "vbpr"],
                             seeds="0,1", epochs=1, **kw)


def test_resume_skips_finished_runs(tiny_exp, tmp_path, monkeypatch):
    calls = install_fake_training(monkeypatch, lambda cfg: (0.3, 0.2 + 0.01 * cfg.seed))
    out = tmp_path / "out"
    spec = _fake_spec(tiny_exp)
    run_compare(spec, out, progress=False)
    assert len(calls) == 8  # 2 backbones x 2 feature sets x 2 seeds
    run_compare(spec, out, progress=False)
    assert len(calls) == 8  # nothing repeated
    (out / "runs/tiny/vbpr/cliper/seed1/metrics.json").unlink()  # as if interrupted in that run
    run_compare(spec, out, progress=False)
    assert len(calls) == 9
    assert calls[-1].model_name == "vbpr" and calls[-1].seed == 1 and calls[-1].features.fusion == "sa"


def test_interrupted_experiment_resumes_where_it_stopped(tiny_exp, tmp_path, monkeypatch):
    calls = install_fake_training(monkeypatch, lambda cfg: (0.3, 0.2))
    import cliper.training.runner as training

    fake = training.train_run

    def dying(cfg, run_dir, **kw):
        if len(calls) == 3:
            raise KeyboardInterrupt
        return fake(cfg, run_dir, **kw)

    monkeypatch.setattr(training, "train_run", dying)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_compare(_fake_spec(tiny_exp), out, progress=False)
    assert len(calls) == 3
    monkeypatch.setattr(training, "train_run", fake)
    run_compare(_fake_spec(tiny_exp), out, progress=False)
    labels = [(c.model_name, c.features.views, c.seed) for c in calls]
    assert len(calls) == 8 and len(set(map(str, labels))) == 8  # each unit trained exactly once


def test_changed_config_is_not_silently_reused(tiny_exp, tmp_path, monkeypatch):
    from cliper.errors import CliperError

    install_fake_training(monkeypatch, lambda cfg: (0.3, 0.2))
    out = tmp_path / "out"
    run_compare(_fake_spec(tiny_exp), out, progress=False)
    with pytest.raises(CliperError, match="different config"):
        run_compare(_fake_spec(tiny_exp, overrides=["train.learning_rate=0.05"]), out, progress=False)


def test_planted_test_best_config_is_not_chosen(tiny_exp, tmp_path, monkeypatch):
    """A grid point best on TEST but worse on VALID must not reach the table."""
    PLANTED, HONEST = 1e-3, 1e-2

    def score(cfg):
        bonus = 0.05 if cfg.features.fusion == "sa" else 0.0
        if cfg.model["reg_weight"] == PLANTED:
            return 0.10, 0.90  # great on test, worse on valid
        return 0.50, 0.20 + bonus

    calls = install_fake_training(monkeypatch, score)
    out = tmp_path / "out"
    spec = _fake_spec(tiny_exp, grid=[f"model.reg_weight=[{PLANTED}, {HONEST}]"])
    files = run_compare(spec, out, progress=False)
    assert len(calls) == 16  # every grid point was trained
    rows = _rows(files["csv"])
    for bb in ("bpr", "vbpr"):
        r = _cell(rows, bb, "recall", 20)
        assert float(r["baseline_mean"]) == pytest.approx(0.20)
        assert float(r["treatment_mean"]) == pytest.approx(0.25)
        assert float(r["improvement_pct"]) == pytest.approx(25.0)
    assert not any(math.isclose(float(r[c]), 0.9 * int(r["k"]) / 20) for r in rows
                   for c in ("baseline_mean", "treatment_mean"))
    # the winner's folder is the one read for per-user values, and it is the honest point
    m = json.loads((out / "runs/tiny/vbpr/cliper/seed0/metrics.json").read_text())
    assert m["grid"]["params"] == {"model.reg_weight": HONEST}
    assert "90.00" not in (out / "compare.md").read_text()
    # the summary also reports the grid winner, not the planted point
    res = CliRunner().invoke(app, ["runs", "summary", str(out)])
    assert res.exit_code == 0 and "0.9000" not in res.output


def test_missing_store_is_a_clear_error(tmp_path):
    from cliper.errors import ConfigError

    res = CliRunner().invoke(app, ["compare", "--output", str(tmp_path / "o"), "-d", f"x={tmp_path}", "-b", "vbpr"])
    assert isinstance(res.exception, ConfigError) and "--store x=DIR" in str(res.exception)


def test_wrong_store_path_fails_before_training(tiny_exp, tmp_path, monkeypatch):
    from cliper.errors import DataError

    calls = install_fake_training(monkeypatch, lambda cfg: (0.3, 0.2))
    ds, _ = tiny_exp
    spec = spec_from_options(None, datasets=[f"tiny={ds}"], stores=[str(tmp_path / "nope")], backbones=["vbpr"])
    with pytest.raises(DataError, match="manifest.json"):
        run_compare(spec, tmp_path / "out", progress=False)
    assert calls == []


def _minilm_store(tmp_path, n_items):
    from exp_helpers import write_store

    store = write_store(tmp_path / "minilm", n_items, views=("text",), dim=12, seed=5)
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["encoder"] = {"id": "sentence-transformers/all-MiniLM-L6-v2", "kind": "text"}
    (store / "manifest.json").write_text(json.dumps(manifest))
    return store


def test_minilm_arm_differs_from_the_others_only_in_text(tiny_exp, tmp_path):
    """Three arms (MiniLM text, CLIP global view, CLIPER); every arm reads the CLIP store's image vector."""
    from cliper.experiments.compare import compare_units
    from cliper.experiments.plan import unit_config
    from cliper.features.store import FeatureStore
    from cliper.training.runner import build_features

    ds, store = tiny_exp
    minilm = _minilm_store(tmp_path, 40)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["compare", "--dataset", f"tiny={ds}", "--store", f"tiny={store}", "--minilm",
                                   f"tiny={minilm}", "-b", "vbpr", "--epochs", "2", "--output", str(out), "-q",
                                   "-o", "model.embedding_dim=16", *FAST])
    assert res.exit_code == 0, res.output
    arms = _rows(out / "arms.csv")
    assert [r["arm"] for r in arms] == ["minilm", "vanilla", "cliper"]
    assert "MiniLM text" in res.output and "CLIP global view" in res.output
    for r in arms:  # each cell re-derived from its run folder
        m = json.loads((out / "runs" / "tiny" / "vbpr" / r["arm"] / "seed0" / "metrics.json").read_text())
        assert float(r["recall@20_mean"]) == pytest.approx(m["test"]["recall@20"], abs=1e-12)

    spec = spec_from_options(None, datasets=[f"tiny={ds}"], stores=[f"tiny={store}"], minilm_stores=[f"tiny={minilm}"],
                             backbones=["vbpr"])
    feats = {u.variant: build_features(unit_config(spec, u), 40) for u in compare_units(spec, out)}
    clip_image = np.asarray(FeatureStore.open(store).image)
    for arm, f in feats.items():
        np.testing.assert_array_equal(f.get("image").numpy(), clip_image)
    np.testing.assert_array_equal(feats["minilm"].get("text").numpy(), np.asarray(FeatureStore.open(minilm).views[0]))
    assert feats["minilm"].dim("text") == 12 and feats["vanilla"].dim("text") == 16


def test_minilm_arm_refuses_a_clip_store_and_a_size_mismatch(tiny_exp, tmp_path):
    from cliper.errors import CliperError
    from exp_helpers import write_store

    ds, store = tiny_exp
    spec = spec_from_options(None, datasets=[f"tiny={ds}"], stores=[f"tiny={store}"], minilm_stores=[f"tiny={store}"],
                             backbones=["vbpr"])
    with pytest.raises(CliperError, match="not a text-only store"):
        run_compare(spec, tmp_path / "a", progress=False)
    small = _minilm_store(tmp_path / "s", 30)
    spec = spec_from_options(None, datasets=[f"tiny={ds}"], stores=[f"tiny={store}"], minilm_stores=[f"tiny={small}"],
                             backbones=["vbpr"])
    with pytest.raises(CliperError, match="30 items"):
        run_compare(spec, tmp_path / "b", progress=False)
