"""Issue 12: a trainable fusion must shape what a kNN-graph backbone sees, not only its initialisation."""

from __future__ import annotations

import copy

import pytest
import torch

from cliper.errors import ConfigError
from cliper.models.fused_graphs import refresh_fused_graphs
from cliper.testing import tiny_features
from cliper.testing.backbones import N_USERS, build, check_trained_fusion_reaches_scores, train_steps

GRAPH_MODELS = ["freedom", "lattice", "mgcn", "smore", "dragon"]


def _fused(fusion: str = "mlp"):
    feats = tiny_features(30, 16, 12, seed=0, views=4, fusion=fusion)
    torch.manual_seed(0)  # the fusion's initialisation (as the runner seeds before reset_parameters)
    feats.reset_parameters()
    return feats


@pytest.mark.parametrize("fusion", ["mlp", "attention"])
@pytest.mark.parametrize("model", GRAPH_MODELS)
def test_trained_fusion_rebuilds_the_graph_and_reaches_the_scores(model, fusion):
    check_trained_fusion_reaches_scores(model, fusion)


def test_freedom_trained_mlp_differs_from_init_and_changes_scores_vs_a_frozen_fusion():
    """Same seed and batches; one FREEDOM trains its MLP, the other keeps it frozen at its initialisation."""
    trained_feats, frozen_feats = _fused(), _fused()
    with torch.no_grad():
        init_text = trained_feats.get("text").clone()
    trained = build("freedom", features=trained_feats, seed=0, graph_refresh_every=1)
    frozen = build("freedom", features=frozen_feats, seed=0, graph_refresh_every=1)
    for p in frozen_feats.fusion.parameters():
        p.requires_grad_(False)
    torch.manual_seed(0)
    s_trained = train_steps(trained, 4)
    torch.manual_seed(0)
    s_frozen = train_steps(frozen, 4)
    with torch.no_grad():
        assert not torch.allclose(trained_feats.get("text"), init_text, atol=1e-4)
        assert torch.equal(frozen_feats.get("text"), init_text)
    assert trained_feats.fusion_change() > 0 and frozen_feats.fusion_change() == 0
    assert trained.fused_graphs.refreshes == 3
    assert not torch.equal(trained.fused_graphs.text_indices, frozen.fused_graphs.text_indices)
    assert not torch.allclose(s_trained, s_frozen)


def test_refresh_schedule_and_refresh_zero_keeps_the_construction_graph():
    model = build("lattice", features=_fused(), graph_refresh_every=3)
    assert [e for e in range(1, 12) if model.fused_graphs.due(e)] == [4, 7, 10]
    still = build("lattice", features=_fused(), graph_refresh_every=0)  # allowed: the learned graph follows
    start = still.fused_graphs.text_indices.clone()
    train_steps(still, 3)
    assert still.fused_graphs.refreshes == 0 and torch.equal(still.fused_graphs.text_indices, start)


def test_fixed_fusion_graphs_are_untouched_and_cached():
    model = build("freedom", features=tiny_features(30, 16, 12, seed=0, views=4, fusion="sa"))
    assert model.fused_graphs.modalities == [] and set(model.graph_keys) == {"image", "text"}
    assert not any(k.startswith("fused_graphs.") for k in model.state_dict())
    assert refresh_fused_graphs(model, 2) is False


def test_followed_graph_is_never_written_to_the_disk_cache(tmp_path):
    model = build("freedom", features=_fused(), cache_dir=tmp_path)
    assert set(model.graph_keys) == {"image"}  # only the fixed image graph is cached by content
    assert len(list((tmp_path / "knn").glob("*.npz"))) == 1
    train_steps(model, 3)
    assert len(list((tmp_path / "knn").glob("*.npz"))) == 1


def test_state_dict_restores_the_graph_in_use():
    """A model loaded from a trained one's state_dict ranks with the trained graph, not its own initial one."""
    feats = _fused()
    model = build("freedom", features=feats, graph_refresh_every=2)
    scores = train_steps(model, 4)  # refreshed before epoch 3
    fresh = build("freedom", features=copy.deepcopy(feats), graph_refresh_every=2, seed=5)
    assert not torch.equal(fresh.fused_graphs.text_indices, model.fused_graphs.text_indices)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh.full_sort_predict(torch.arange(N_USERS)), scores)


@pytest.mark.parametrize(("model", "params", "needle"), [
    ("freedom", {"reg_weight": 0.0}, "reg_weight=0"),
    ("freedom", {"graph_refresh_every": 0}, "graph_refresh_every=0"),
    ("lattice", {"lambda_coeff": 1.0}, "lambda_coeff=1"),
])
@pytest.mark.parametrize("fusion", ["mlp", "attention"])
def test_combinations_where_the_fusion_cannot_train_or_reach_the_scores_are_refused(model, params, needle, fusion):
    with pytest.raises(ConfigError) as err:
        build(model, features=_fused(fusion), **params)
    msg = str(err.value)
    assert "\n" not in msg and f"model {model!r}" in msg and f"features.fusion={fusion!r}" in msg and needle in msg
    build(model, features=tiny_features(30, 16, 12, seed=0, views=4, fusion="sa"), **params)  # fixed fusion: fine


@pytest.mark.parametrize("fusion", ["mlp", "attention", "sa", "concat"])
def test_features_of_some_rows_equal_those_rows_of_all_and_keep_gradients(fusion):
    feats = _fused(fusion)
    rows = torch.tensor([4, 0, 29, 4, 17])
    part = feats.get("text", rows)
    assert part.shape == (5, feats.dim("text"))
    torch.testing.assert_close(part, feats.get("text")[rows])
    torch.testing.assert_close(feats.get("image", rows), feats.get("image")[rows])
    if feats.trainable:
        part.sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in feats.fusion.parameters()
                   if fusion != "attention" or p is feats.fusion.query)


@pytest.mark.parametrize(("model", "params", "needle"), [
    ("bm3", {"cl_weight": 0.0}, "cl_weight=0"),
    ("bpr", {}, "reads no item features"),
    ("lightgcn", {}, "reads no item features"),
])
def test_models_the_fusion_cannot_reach_refuse_it(model, params, needle):
    with pytest.raises(ConfigError) as err:
        build(model, features=_fused("mlp"), **params)
    msg = str(err.value)
    assert "\n" not in msg and f"model {model!r}" in msg and "features.fusion='mlp'" in msg and needle in msg
