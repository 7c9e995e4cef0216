"""`cliper ablate`: the variants each kind makes, tables re-derived from runs, no choice on test."""

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cliper.cli.main import app
from cliper.errors import ConfigError
from cliper.experiments.ablation import ablation_plan, run_ablation
from cliper.experiments.plan import unit_config
from cliper.experiments.spec import spec_from_options

from exp_helpers import VIEWS, install_fake_training


def _spec(tiny_exp, backbones=("vbpr",), seeds="0"):
    ds, store = tiny_exp
    return spec_from_options(None, datasets=[f"tiny={ds}"], stores=[str(store)], backbones=list(backbones),
                             seeds=seeds, epochs=1)


def test_view_variants_drop_each_view_and_keep_global_only(tiny_exp):
    units, ref, _ = ablation_plan(_spec(tiny_exp, seeds="0,1"), "views")
    names = list(dict.fromkeys(u.variant for u in units))
    assert names == ["all", *[f"no-{v}" for v in VIEWS], "only-global"]
    assert ref == "all" and len(units) == len(names) * 2
    spec = _spec(tiny_exp)
    by_name = {u.variant: unit_config(spec, u) for u in ablation_plan(spec, "views")[0]}
    assert by_name["all"].features.views is None
    assert by_name["no-brand"].features.views == [v for v in VIEWS if v != "brand"]
    assert by_name["only-global"].features.views == ["global"]
    assert all(c.features.fusion == "sa" and c.features.store for c in by_name.values())


def test_sweeps_set_the_right_keys(tiny_exp):
    spec = _spec(tiny_exp, backbones=("vbpr", "freedom"))
    units, ref, swept = ablation_plan(spec, "dim")
    assert ref == "dim64" and swept["dim128"] == 128
    cfgs = {(u.backbone, u.variant): unit_config(spec, u) for u in units}
    assert cfgs[("freedom", "dim128")].model["embedding_dim"] == 128
    assert cfgs[("freedom", "dim128")].model["feat_embed_dim"] == 128  # FREEDOM's feature projection follows
    assert "feat_embed_dim" not in cfgs[("vbpr", "dim128")].model
    units, ref, _ = ablation_plan(_spec(tiny_exp), "tau", [0.05, 0.7])
    assert ref == "tau0.05"  # 0.1 not swept: the first value is the reference
    assert sorted(unit_config(spec, u).features.tau for u in units) == [0.05, 0.7]
    units, ref, _ = ablation_plan(_spec(tiny_exp), "fusion")
    assert ref == "sa" and [u.variant for u in units] == ["sum", "concat", "mlp", "sa", "attention"]
    with pytest.raises(ConfigError, match="unknown ablation"):
        ablation_plan(_spec(tiny_exp), "colour")


def test_default_backbone_is_freedom(tiny_exp):
    ds, store = tiny_exp
    spec = spec_from_options(None, datasets=[f"tiny={ds}"], stores=[str(store)])
    units, _, _ = ablation_plan(spec, "fusion", ["sa"])
    assert {u.backbone for u in units} == {"freedom"}


def test_best_variant_is_marked_on_validation_not_test(tiny_exp, tmp_path, monkeypatch):
    scores = {"sum": (0.10, 0.90), "sa": (0.50, 0.30), "mlp": (0.40, 0.35)}  # sum: best on test, worst on valid
    install_fake_training(monkeypatch, lambda cfg: scores[cfg.features.fusion])
    files = run_ablation(_spec(tiny_exp, seeds="0,1"), "fusion", tmp_path / "out", values=["sum", "sa", "mlp"],
                         progress=False)
    rows = {r["variant"]: r for r in csv.DictReader(open(files["csv"]))}
    assert rows["sa"]["best_on_valid"] == "True" and rows["sum"]["best_on_valid"] == "False"
    assert float(rows["mlp"]["change_vs_sa_recall@20_pct"]) == pytest.approx((0.35 - 0.30) / 0.30 * 100)
    assert "**sa**" in files["md"].read_text()
    with Image.open(files["png"]) as im:
        im.verify()


def test_tau_sweep_end_to_end_cell_matches_runs(tiny_exp, tmp_path):
    ds, store = tiny_exp
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["ablate", "--kind", "tau", "--values", "0.1,0.5", "--output", str(out),
                                   "-d", f"tiny={ds}", "--store", str(store), "-b", "vbpr", "--seeds", "0",
                                   "--epochs", "1", "-q", "-o", "train.batch_size=64", "-o", "model.embedding_dim=16"])
    assert res.exit_code == 0, res.output
    rows = {r["variant"]: r for r in csv.DictReader(open(out / "ablation_tau.csv"))}
    assert set(rows) == {"tau0.1", "tau0.5"}
    m = json.loads((out / "runs/tiny/vbpr/tau0.5/seed0/metrics.json").read_text())
    assert float(rows["tau0.5"]["test_ndcg@20_mean"]) == pytest.approx(m["test"]["ndcg@20"], abs=1e-12)
    assert float(rows["tau0.5"]["value"]) == 0.5
    assert m["features"]["tau"] == 0.5
    for png in (out / "ablation_tau.png", out / "runs/tiny/vbpr/tau0.1/seed0/curves.png"):
        with Image.open(png) as im:
            im.verify()
    assert np.isfinite(float(rows["tau0.1"]["valid_recall@20_mean"]))
