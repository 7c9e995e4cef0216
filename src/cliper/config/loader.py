"""Build a :class:`RunConfig` from layers and validate it, model hyperparameters included.

Layers, lowest first: ``configs/defaults.yaml`` < ``configs/datasets/<dataset>.yaml`` <
``configs/models/<model>.yaml`` < user YAML files < ``-o key=value`` overrides. The
model section is checked against the model class's ``Params``: a misspelled key is
an error with a suggestion, never silently ignored.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cliper.config.schema import RunConfig
from cliper.errors import ConfigError, DataError, reading

_CONFIGS = resources.files("cliper") / "configs"


def _read_yaml(path) -> dict[str, Any]:
    try:
        with reading(path):
            text = path.read_text(encoding="utf-8")
    except DataError as exc:
        if not Path(str(path)).exists():
            raise ConfigError(f"config file not found: {path}") from None
        raise ConfigError(str(exc)) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    return data


def _packaged(kind: str, name: str | None) -> dict[str, Any]:
    if not name:
        return {}
    p = _CONFIGS / kind / f"{name.lower()}.yaml"
    return _read_yaml(p) if p.is_file() else {}


def _model_layer(name: str) -> dict[str, Any]:
    """A built-in model's packaged YAML, or the ``config_file`` a plugin model ships beside its module."""
    from cliper.models.registry import BUILTIN, get_model_class

    if name.lower() in BUILTIN:
        return _packaged("models", name)
    cls = get_model_class(name)
    if not cls.config_file:
        return {}
    return _read_yaml(Path(sys.modules[cls.__module__].__file__).parent / cls.config_file)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` wins; nested mappings merge key by key (``grid`` is replaced whole)."""
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "grid":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def coerce_numbers(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string: turn number-like strings (in lists and mappings too) into floats."""
    if isinstance(value, str) and _FLOAT.match(value.strip()) and any(c in value for c in ".eE"):
        return float(value)
    if isinstance(value, list):
        return [coerce_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: coerce_numbers(v) for k, v in value.items()}
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.learning_rate=1e-3'`` -> (['train', 'learning_rate'], 0.001); values are YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), coerce_numbers(value)


def set_dotted(cfg: dict[str, Any], path: list[str], value: Any) -> None:
    node = cfg
    for part in path[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set {'.'.join(path)}: {part!r} is not a section")
        node = nxt
    node[path[-1]] = value


def _format_validation(exc: ValidationError, known: dict[str, list[str]]) -> str:
    msgs = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            section, _, key = loc.rpartition(".")
            pool = known.get(section, [])
            close = difflib.get_close_matches(key, pool, n=1)
            hint = f" (did you mean {section + '.' if section else ''}{close[0]}?)" if close else ""
            msgs.append(f"unknown key {loc!r}{hint}")
        else:
            msgs.append(f"{loc}: {err['msg']}")
    return "; ".join(msgs)


def _known_keys() -> dict[str, list[str]]:
    known = {"": list(RunConfig.model_fields)}
    for name, field in RunConfig.model_fields.items():
        sub = getattr(field.annotation, "model_fields", None)
        if sub:
            known[name] = list(sub)
    return known


def validate(raw: dict[str, Any]) -> RunConfig:
    """Validate the merged mapping, then the model section against the model's Params."""
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("invalid config: " + _format_validation(exc, _known_keys())) from None
    validate_model_params(cfg)
    for key in cfg.grid:
        if "." not in key:
            raise ConfigError(f"grid key {key!r} must be dotted, e.g. model.reg_weight")
    return cfg


def validate_model_params(cfg: RunConfig):
    from cliper.models.registry import get_model_class

    cls = get_model_class(cfg.model_name)
    try:
        return cls.Params.model_validate(cfg.model_params())
    except ValidationError as exc:
        known = {"model": list(cls.Params.model_fields) + ["name"]}
        errs = []
        for err in exc.errors():
            err = dict(err)
            err["loc"] = ("model",) + tuple(err["loc"])
            errs.append(err)
        msgs = []
        for err in errs:
            loc = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(err["loc"][-1], known["model"], n=1)
                hint = f" (did you mean model.{close[0]}?)" if close else ""
                msgs.append(f"unknown key {loc!r} for model {cfg.model_name!r}{hint}")
            else:
                msgs.append(f"{loc}: {err['msg']}")
        raise ConfigError("invalid config: " + "; ".join(msgs)) from None


def load_config(
    files: list[str | Path] | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
    search: bool = False,
) -> RunConfig:
    """Merge the layers and validate. ``base`` (a mapping) sits just under the user files.

    The ``grid`` a packaged model YAML declares (the hyperparameters its paper searched)
    is used only with ``search=True``; a grid from user files or overrides always is.
    """
    user: dict[str, Any] = copy.deepcopy(base or {})
    for f in files or []:
        user = deep_merge(user, _read_yaml(Path(f)))
    cli: dict[str, Any] = {}
    for o in overrides or []:
        path, value = parse_override(o)
        set_dotted(cli, path, value)
    top = deep_merge(user, cli)

    defaults = _read_yaml(_CONFIGS / "defaults.yaml")
    model_name = (top.get("model") or {}).get("name") or defaults["model"]["name"]
    ds = top.get("dataset") or {}
    ds_name = ds.get("name") or (_dataset_name_from_path(ds["path"]) if ds.get("path") else None)
    merged = deep_merge(defaults, _packaged("datasets", ds_name))
    model_layer = _model_layer(model_name)
    if not search:
        model_layer.pop("grid", None)
    merged = deep_merge(merged, model_layer)
    merged = deep_merge(merged, top)
    return validate(merged)


def _dataset_name_from_path(path: str) -> str:
    p = Path(path)
    if p.is_dir():
        inter = sorted(p.glob("*.inter"))
        if len(inter) == 1:
            return inter[0].stem
    return p.stem.replace("amazon-", "")


def expand_grid(cfg: RunConfig) -> list[tuple[dict[str, Any], RunConfig]]:
    """Every combination of ``cfg.grid`` as (assignment, validated config without grid)."""
    base = cfg.model_dump()
    base["grid"] = {}
    if not cfg.grid:
        return [({}, validate(base))]
    keys = list(cfg.grid)
    out = []
    for values in itertools.product(*(cfg.grid[k] for k in keys)):
        raw = copy.deepcopy(base)
        assignment = dict(zip(keys, values))
        for k, v in assignment.items():
            set_dotted(raw, k.split("."), v)
        out.append((assignment, validate(raw)))
    return out
