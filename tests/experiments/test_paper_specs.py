"""The packaged paper experiments (``--spec paper:<name>``) load, plan the paper's matrix, and run."""

import pytest
import yaml
from typer.testing import CliRunner

from cliper.cli.main import app
from cliper.errors import ConfigError
from cliper.experiments.ablation import ablation_plan
from cliper.experiments.compare import compare_units
from cliper.experiments.plan import unit_config
from cliper.experiments.spec import load_spec, packaged_specs


def test_every_packaged_spec_validates():
    assert {"table2", "rq2-views", "rq2-fusion", "rq3-dim", "rq3-tau", "encoders"} <= set(packaged_specs())
    for name in packaged_specs():
        spec = load_spec(f"paper:{name}")
        assert spec.datasets and spec.backbones and len(spec.seeds) == 3, name


def test_table2_plans_the_papers_matrix_with_paths_from_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec("paper:table2")
    assert spec.datasets["clothing"].path == str(tmp_path / "data" / "amazon-clothing")
    units = compare_units(spec)
    assert len(units) == 3 * 5 * 2 * 3  # datasets x backbones x (vanilla, cliper) x seeds
    assert {u.backbone for u in units} == {"mmgcn", "dualgnn", "lattice", "slmrec", "freedom"}
    assert spec.search  # each backbone's packaged grid, chosen on validation


def test_encoder_comparison_uses_two_stores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec("paper:encoders")
    cfg = {u.variant: unit_config(spec, u) for u in compare_units(spec)}
    assert cfg["clip"].features.store == str(tmp_path / "features" / "baby-clip-l")
    assert cfg["cliper"].features.store == str(tmp_path / "features" / "baby-longclip-l")
    assert cfg["clip"].features.fusion == cfg["cliper"].features.fusion == "sa"


def test_fusion_spec_sweeps_every_fusion():
    spec = load_spec("paper:rq2-fusion")
    units, ref, _ = ablation_plan(spec, spec.ablation.kind, spec.ablation.values)
    assert ref == "sa"
    assert sorted({u.variant for u in units}) == sorted(["sum", "concat", "mlp", "sa", "attention"])


def test_unknown_packaged_spec_lists_the_known_ones():
    with pytest.raises(ConfigError, match="paper:table2"):
        load_spec("paper:table9")


def test_ablate_takes_its_kind_from_the_spec(tiny_exp, tmp_path):
    ds, store = tiny_exp
    f = tmp_path / "tau.yaml"
    f.write_text(yaml.safe_dump({"datasets": {"tiny": {"path": str(ds), "store": str(store)}},
                                 "backbones": ["vbpr"], "overrides": {"train.epochs": 1},
                                 "ablation": {"kind": "tau", "values": [0.1, 0.5]}}))
    res = CliRunner().invoke(app, ["ablate", "--spec", str(f), "--output", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "ablation_tau.md").is_file()
    runs = sorted(p.parent.parent.name for p in (tmp_path / "out").rglob("metrics.json"))
    assert runs == ["tau0.1", "tau0.5"], runs
    res = CliRunner().invoke(app, ["ablate", "-d", f"tiny={ds}", "--store", str(store), "--output", str(tmp_path / "o2")])
    assert res.exit_code != 0 and "no ablation kind" in str(res.exception or res.output)
