"""Experiment specs: YAML files, relative paths, shorthand keys, options over the file, clear errors."""

import pytest
import yaml

from cliper.errors import ConfigError
from cliper.experiments.compare import compare_units
from cliper.experiments.plan import unit_config
from cliper.experiments.spec import load_spec, spec_from_options


def test_spec_file_paths_shorthand_and_featuresets(tiny_exp, tmp_path):
    ds, store = tiny_exp
    f = tmp_path / "exp.yaml"
    f.write_text(yaml.safe_dump({
        "datasets": {"tiny": {"path": "tiny", "store": "store"}},
        "backbones": ["vbpr"],
        "featuresets": {"vanilla": {"views": ["global"], "fusion": "sum"},  # bare keys mean features.*
                        "cliper": {"features": {"fusion": "attention", "tau": 0.2}}},  # nested also works
        "seeds": [3, 4],
        "overrides": {"train": {"epochs": 7}},
    }))
    spec = load_spec(f)
    assert spec.datasets["tiny"].path == str(ds) and spec.datasets["tiny"].store == str(store)
    cfgs = {(u.variant, u.seed): unit_config(spec, u) for u in compare_units(spec)}
    assert set(cfgs) == {(v, s) for v in ("vanilla", "cliper") for s in (3, 4)}
    van, cli = cfgs[("vanilla", 3)], cfgs[("cliper", 4)]
    assert van.features.store == str(store) and van.features.views == ["global"] and van.features.fusion == "sum"
    assert cli.features.fusion == "attention" and cli.features.tau == 0.2 and cli.seed == 4
    assert van.train.epochs == cli.train.epochs == 7
    assert van.model == cli.model  # same embedding size and hyperparameters on both sides
    # options win over the file
    spec2 = spec_from_options(spec, seeds="9", epochs=2, backbones=["bpr,vbpr"])
    assert spec2.seeds == [9] and spec2.backbones == ["bpr", "vbpr"] and spec2.overrides["train.epochs"] == 2


def test_vanilla_from_mmrec_files(tiny_exp, tmp_path):
    import numpy as np

    ds, store = tiny_exp
    np.save(tmp_path / "image_feat.npy", np.zeros((40, 8), np.float32))
    spec = spec_from_options(None, datasets=[f"tiny={ds}"], stores=[str(store)],
                             vanilla_images=[f"tiny={tmp_path / 'image_feat.npy'}"], backbones=["vbpr"])
    cfg = {u.variant: unit_config(spec, u) for u in compare_units(spec)}
    assert cfg["vanilla"].features.image.endswith("image_feat.npy") and cfg["vanilla"].features.store is None
    assert cfg["cliper"].features.store == str(store)


def test_bad_specs_are_clear(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("datasets: {x: {path: a, colour: red}}\nbackbones: [vbpr]\n")
    with pytest.raises(ConfigError, match="colour"):
        load_spec(f)
    with pytest.raises(ConfigError, match="seeds"):
        spec_from_options(None, seeds="0,a")
    with pytest.raises(ConfigError, match="no backbone"):
        compare_units(spec_from_options(None, datasets=[str(tmp_path)], stores=[str(tmp_path)]))
    with pytest.raises(ConfigError, match="grid axis"):
        spec_from_options(None, grid=["model.reg_weight=0.1"])


def test_yaml_1_1_exponent_strings_become_numbers(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("datasets: {x: d}\nbackbones: [vbpr]\ngrid: {model.reg_weight: [1e-4, 1e-2]}\n"
                 "overrides: {train.learning_rate: 5e-4}\n")
    spec = load_spec(f)
    assert spec.grid["model.reg_weight"] == [1e-4, 1e-2]
    assert spec.overrides["train.learning_rate"] == 5e-4
    spec = spec_from_options(spec, grid=["train.learning_rate=[1e-3,5e-3]"])
    assert spec.grid["train.learning_rate"] == [1e-3, 5e-3]
