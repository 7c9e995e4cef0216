"""Every size, count and weight of every model's Params and of the run config rejects impossible values."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError

from cliper.config.loader import load_config
from cliper.errors import ConfigError
from cliper.models.registry import BUILTIN, get_model_class



def _numeric_fields(params_cls):
    for name, field in params_cls.model_fields.items():
        args = typing.get_args(field.annotation) or (field.annotation,)
        base = {getattr(a, "__origin__", a) for a in args} - {type(None)}
        metadata = [m for a in args for m in getattr(a, "__metadata__", ())] + list(field.metadata)
        if base & {int, float} or metadata:
            if bool not in base:
                yield name, field


@pytest.mark.parametrize("model", sorted(BUILTIN))
def test_every_numeric_param_rejects_negative_values(model):
    params = get_model_class(model).Params
    checked = []
    for name, field in _numeric_fields(params):
        if name == "negative_slope":  # LeakyReLU slope: any real number is a valid choice
            continue
        with pytest.raises(ValidationError, match=name):
            params.model_validate({name: -1})
        checked.append(name)
    assert "embedding_dim" in checked and "reg_weight" in checked


@pytest.mark.parametrize("model", sorted(BUILTIN))
def test_sizes_reject_zero(model):
    params = get_model_class(model).Params
    sizes = [n for n, _ in _numeric_fields(params)
             if (n.endswith(("_dim", "_size", "multiplier")) or n in ("k", "knn_k"))]
    assert "embedding_dim" in sizes
    for name in sizes:
        with pytest.raises(ValidationError, match=name):
            params.model_validate({name: 0})
    defaults = params()
    for name in sizes:
        value = getattr(defaults, name)
        assert value is None or value > 0


@pytest.mark.parametrize(
    "override, where",
    [("model.embedding_dim=0", "model.embedding_dim"), ("model.embedding_dim=-8", "model.embedding_dim"),
     ("model.n_layers=-1", "model.n_layers"), ("threads=0", "threads"), ("seed=-1", "seed"),
     ("train.batch_size=0", "train.batch_size"), ("train.epochs=0", "train.epochs"),
     ("train.clip_grad_norm=0", "train.clip_grad_norm"), ("eval.topk=[0]", "eval.topk"),
     ("features.random_image_dim=0", "features.random_image_dim"), ("features.tau=0", "features.tau"),
     ("eval.batch_size=-1", "eval.batch_size")],
)
def test_config_values_out_of_range_name_the_key(override, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_config(overrides=["model.name=lightgcn", override])


def test_empty_grid_axis_is_an_error():
    with pytest.raises(ConfigError, match="grid axis 'model.reg_weight' has no values"):
        load_config(overrides=["model.name=lightgcn", "grid={model.reg_weight: []}"])


@pytest.mark.parametrize("field", ["image_size", "patch_size", "hidden_size", "layers", "heads", "projection_dim",
                                   "bpe_merges", "threads", "epochs", "max_text_length"])
def test_finetune_sizes_reject_zero(field):
    from cliper.finetune.config import FinetuneConfig

    with pytest.raises(ConfigError, match=field):
        FinetuneConfig(**{field: 0})
