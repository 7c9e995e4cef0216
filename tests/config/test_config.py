import pytest

from cliper.config import expand_grid, load_config, parse_override
from cliper.errors import ConfigError


def test_layers_in_order(tmp_path):
    user = tmp_path / "u.yaml"
    user.write_text("train:\n  learning_rate: 0.005\nmodel:\n  name: lightgcn\n  n_layers: 3\n")
    cfg = load_config(files=[user], overrides=["model.n_layers=4"])
    assert cfg.train.learning_rate == 0.005  # user file over defaults
    assert cfg.model["n_layers"] == 4  # command line over user file
    assert cfg.model["reg_weight"] == 1e-4  # packaged model yaml over package defaults
    assert cfg.train.patience == 21  # MMRec: stopping_step 20 stops after 21 evaluations without gain


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.learnig_rate=1", "did you mean train.learning_rate"),
        ("model.n_layer=2", "did you mean model.n_layers"),
        ("evals.topk=[5]", "unknown key 'evals'"),
        ("train.batch_size=0", "batch_size"),
        ("eval.valid_metric=recall@30", "valid_metric"),
        ("model.name=lightgnc", "did you mean 'lightgcn'"),
    ],
)
def test_misspelled_or_invalid_keys_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_override_values_are_typed():
    assert parse_override("train.learning_rate=1e-3") == (["train", "learning_rate"], 1e-3)
    assert parse_override("eval.topk=[5,10]") == (["eval", "topk"], [5, 10])
    assert parse_override("features.store=/x/y") == (["features", "store"], "/x/y")
    assert parse_override("grid.x=[1e-4, 1e-2, 3]") == (["grid", "x"], [1e-4, 1e-2, 3])
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_packaged_grid_only_with_search():
    assert load_config().grid == {}
    assert "model.n_layers" in load_config(search=True).grid


def test_grid_expansion_validates_each_point():
    cfg = load_config(overrides=["grid={model.n_layers: [1, 2], train.learning_rate: [0.1, 0.01]}"])
    points = expand_grid(cfg)
    assert len(points) == 4
    assert {(p["model.n_layers"], p["train.learning_rate"]) for p, _ in points} == {(1, .1), (1, .01), (2, .1), (2, .01)}
    assert all(c.grid == {} for _, c in points)
    bad = load_config(overrides=["grid={model.n_layerz: [1]}"])
    with pytest.raises(ConfigError, match="n_layerz"):
        expand_grid(bad)
