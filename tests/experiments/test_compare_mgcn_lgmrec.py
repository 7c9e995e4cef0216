"""`cliper compare` accepts MGCN and LGMRec: real tiny runs, and their packaged grids plan with --search."""

import csv

from typer.testing import CliRunner

from cliper.cli.main import app
from cliper.experiments.compare import compare_units, run_compare
from cliper.experiments.plan import unit_config
from cliper.experiments.spec import spec_from_options

from exp_helpers import install_fake_training

FAST = ["-o", "train.batch_size=64", "-o", "eval.batch_size=32", "-o", "model.embedding_dim=16"]


def test_compare_trains_mgcn_and_lgmrec(tiny_exp, tmp_path):
    ds, store = tiny_exp
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["compare", "-d", f"tiny={ds}", "--store", f"tiny={store}", "-b", "mgcn,lgmrec",
                                   "--epochs", "1", "--output", str(out), "-q", *FAST])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out / "compare.csv", encoding="utf-8")))
    assert {r["backbone"] for r in rows} == {"mgcn", "lgmrec"}


def test_packaged_grids_plan_with_search(tiny_exp, tmp_path, monkeypatch):
    ds, store = tiny_exp
    calls = install_fake_training(monkeypatch, lambda cfg: (0.3, 0.2))
    spec = spec_from_options(None, datasets=[f"tiny={ds}"], stores=[f"tiny={store}"], backbones=["mgcn", "lgmrec"],
                             search=True)
    units = compare_units(spec)
    assert {u.backbone for u in units} == {"mgcn", "lgmrec"}
    for u in units:
        cfg = unit_config(spec, u)
        assert set(cfg.grid) == ({"model.cl_loss"} if u.backbone == "mgcn" else
                                 {"model.n_hyper_layers", "model.hyper_num", "model.keep_rate", "model.alpha"})
    run_compare(spec, tmp_path / "out", progress=False)
    assert len(calls) == 2 * (3 + 36)  # vanilla + cliper, every grid point
