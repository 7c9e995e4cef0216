"""`cliper ablate --kind fusion` never reports an untrained fusion (issue 12, the paper's RQ2)."""

import csv
import json

import pytest

import exp_helpers
from cliper.errors import CliperError
from cliper.experiments.ablation import run_ablation
from cliper.experiments.spec import spec_from_options
from exp_helpers import install_fake_training


def _spec(tiny_exp, backbones=("freedom",), epochs=2):
    ds, store = tiny_exp
    return spec_from_options(None, datasets=[f"tiny={ds}"], stores=[str(store)], backbones=list(backbones),
                             seeds="0", epochs=epochs)


def test_fusion_ablation_on_freedom_trains_the_mlp(tiny_exp, tmp_path):
    out = tmp_path / "out"
    files = run_ablation(_spec(tiny_exp), "fusion", out, values=["sa", "mlp", "attention"], progress=False)
    rows = {r["variant"]: r for r in csv.DictReader(open(files["csv"]))}
    assert set(rows) == {"sa", "mlp", "attention"}
    for variant in ("mlp", "attention"):
        m = json.loads((out / f"runs/tiny/freedom/{variant}/seed0/metrics.json").read_text())
        assert m["fusion"]["method"] == variant and m["fusion"]["trainable"] is True
        assert m["fusion"]["weight_change"] > 0  # the reported weights are not the initialisation
    sa = json.loads((out / "runs/tiny/freedom/sa/seed0/metrics.json").read_text())
    assert sa["fusion"] == {"method": "sa", "trainable": False, "weight_change": None}


def test_an_untrained_trainable_fusion_is_refused_in_one_line(tiny_exp, tmp_path, monkeypatch):
    install_fake_training(monkeypatch, lambda cfg: (0.3, 0.3))
    monkeypatch.setattr(exp_helpers, "_fake_fusion_record",
                        lambda cfg: {"method": cfg.features.fusion, "trainable": cfg.features.fusion != "sa",
                                     "weight_change": 0.0 if cfg.features.fusion != "sa" else None})
    with pytest.raises(CliperError) as err:
        run_ablation(_spec(tiny_exp, ("vbpr",)), "fusion", tmp_path / "out", values=["sa", "mlp"], progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "not trained" in msg and "tiny/vbpr/mlp/seed0" in msg and "sa/" not in msg
    assert not (tmp_path / "out" / "ablation_fusion.csv").exists()


def test_compare_refuses_an_untrained_trainable_fusion_too(tiny_exp, tmp_path, monkeypatch):
    from cliper.experiments.compare import run_compare

    install_fake_training(monkeypatch, lambda cfg: (0.3, 0.3))
    monkeypatch.setattr(exp_helpers, "_fake_fusion_record",
                        lambda cfg: {"method": "mlp", "trainable": True, "weight_change": 0.0})  # as the run records it
    ds, store = tiny_exp
    spec = spec_from_options(None, datasets=[f"tiny={ds}"], stores=[str(store)], backbones=["vbpr"], seeds="0",
                             epochs=2)
    with pytest.raises(CliperError) as err:
        run_compare(spec, tmp_path / "out", progress=False)
    assert "\n" not in str(err.value) and "not trained" in str(err.value)
    assert not (tmp_path / "out" / "compare.csv").exists()
