"""What an experiment is: datasets, backbones, feature sets, seeds, grid and budget.

An :class:`ExperimentSpec` comes from a YAML file (``--spec``), from command-line
options, or both (options win). It only *describes* runs; every run is a normal
``cliper train`` run (``cliper.training.runner``), so nothing here trains.

Feature sets are named bundles of dotted config overrides (``features.fusion: sa``).
A feature set that names no feature source (``features.store`` / ``image`` / ``text``
/ ``random_*``) gets the dataset's feature store. The two default sets are:

- ``vanilla``: the dataset's MMRec ``image``/``text`` files when given, else the store
  used with one view (``features.views: [global]``, ``fusion: sum``) -- one text
  embedding per item, no multi-view fusion;
- ``cliper``: the store with all views fused by similarity attention (SA, tau 0.1).
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cliper.config.loader import coerce_numbers
from cliper.errors import ConfigError, reading

SOURCE_KEYS = ("features.store", "features.image", "features.text", "features.random_image_dim",
               "features.random_text_dim")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetEntry(_Strict):
    """One dataset: its interaction folder and the features available for it."""

    path: str
    store: str | None = None  # CLIPER feature store (views + image)
    image: str | None = None  # vanilla MMRec image_feat.npy
    text: str | None = None  # vanilla MMRec text_feat.npy
    minilm: str | None = None  # text-only all-MiniLM-L6-v2 store: adds the ``minilm`` arm (cliper.experiments.compare)
    featuresets: dict[str, dict[str, Any]] = {}  # per-dataset extra overrides, by feature-set name


class AblationEntry(_Strict):
    """The ablation a spec describes, for ``cliper ablate --spec`` without ``--kind``."""

    kind: str
    values: list[Any] | None = None


class ExperimentSpec(_Strict):
    """A grid of runs: datasets x backbones x feature sets x seeds (each optionally a hyperparameter grid)."""

    name: str = "experiment"
    datasets: dict[str, DatasetEntry] = {}
    backbones: list[str] = []
    featuresets: dict[str, dict[str, Any]] | None = None  # None: vanilla + cliper defaults
    baseline: str = "vanilla"
    treatment: str = "cliper"
    vanilla_view: str = "global"  # the single store view that stands in for vanilla text features
    seeds: list[int] = Field(default_factory=lambda: [0])
    grid: dict[str, list[Any]] = {}  # chosen on VALIDATION by train_grid
    search: bool = False  # also search the grid each model's packaged config declares
    overrides: dict[str, Any] = {}  # dotted keys applied to every run (budget: train.epochs, ...)
    config_files: list[str] = []  # YAML config layers applied to every run
    ablation: AblationEntry | None = None  # what `cliper ablate` sweeps when --kind is not given

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one seed is required")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for k, values in v.items():
            if "." not in k:
                raise ValueError(f"grid key {k!r} must be dotted, e.g. model.reg_weight")
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid axis {k!r} needs a non-empty list of values")
        return v

    def check_ready(self) -> None:
        if not self.datasets:
            raise ConfigError("no dataset: pass --dataset NAME=PATH or list datasets in the --spec file")
        if not self.backbones:
            raise ConfigError("no backbone: pass --backbone NAME or list backbones in the --spec file")


def normalise_overrides(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Flatten nested mappings to dotted keys; a bare key means ``features.<key>``."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node and prefix not in ("grid",) and not prefix.endswith(".grid"):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = coerce_numbers(copy.deepcopy(node))

    for key, value in (raw or {}).items():
        key = str(key)
        if "." not in key and key not in ("seed", "device", "threads", "grid") and not isinstance(value, dict):
            key = f"features.{key}"
        walk(key, value)
    return out


PACKAGED_PREFIX = "paper:"


def packaged_specs() -> list[str]:
    """Names of the packaged paper experiments, as ``--spec paper:<name>`` takes them."""
    folder = resources.files("cliper") / "configs" / "experiments" / "paper"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate an experiment YAML file (unknown keys are errors).

    ``paper:<name>`` names a packaged spec of the paper's experiments (``packaged_specs()``);
    its relative paths are relative to the current folder (the layout the reproduction page
    sets up), while a file's relative paths are relative to that file.
    """
    text = str(path)
    if text.startswith(PACKAGED_PREFIX):
        name = text[len(PACKAGED_PREFIX):]
        known = packaged_specs()
        if name not in known:
            raise ConfigError(f"unknown packaged experiment {text!r}; available: "
                              + ", ".join(PACKAGED_PREFIX + k for k in known))
        packaged = resources.files("cliper") / "configs" / "experiments" / "paper" / f"{name}.yaml"
        return _load_spec_text(packaged.read_text(encoding="utf-8"), Path.cwd(), where=text)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment spec not found: {path}")
    with reading(path):
        text = path.read_text(encoding="utf-8")
    return _load_spec_text(text, path.resolve().parent, where=str(path))


def _load_spec_text(text: str, base: Path, where: str) -> ExperimentSpec:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an experiment spec must be a mapping")
    # relative paths are relative to ``base``; a dataset may be given as just its path

    def rel(value: Any) -> Any:
        return str(base / str(value)) if value and not Path(str(value)).is_absolute() else value

    datasets = {}
    for name, entry in (raw.get("datasets") or {}).items():
        entry = {"path": entry} if isinstance(entry, str) else entry
        if isinstance(entry, dict):
            entry = {**entry, **{k: rel(entry[k]) for k in ("path", "store", "image", "text", "minilm") if entry.get(k)}}
            sets = entry.get("featuresets")
            if isinstance(sets, dict):  # a per-dataset feature set may name its own files
                entry["featuresets"] = {
                    fs: {k: rel(v) if k.removeprefix("features.") in ("store", "image", "text") else v
                         for k, v in ov.items()} if isinstance(ov, dict) else ov
                    for fs, ov in sets.items()}
        datasets[name] = entry
    raw["datasets"] = datasets
    raw["config_files"] = [rel(f) for f in raw.get("config_files") or []]
    return parse_spec(raw, where=where)


def parse_spec(raw: dict[str, Any], where: str = "spec") -> ExperimentSpec:
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msgs.append(f"unknown key {loc!r}" if err["type"] == "extra_forbidden" else f"{loc}: {err['msg']}")
        raise ConfigError(f"{where}: invalid experiment spec: " + "; ".join(msgs)) from None
    spec.overrides = normalise_overrides(spec.overrides)
    spec.grid = {k: coerce_numbers(v) for k, v in spec.grid.items()}
    if spec.featuresets is not None:
        spec.featuresets = {k: normalise_overrides(v) for k, v in spec.featuresets.items()}
    for entry in spec.datasets.values():
        entry.featuresets = {k: normalise_overrides(v) for k, v in entry.featuresets.items()}
    return spec


def dataset_name(path: str | Path) -> str:
    """``/x/amazon-baby`` -> ``baby``; ``/x/demo.inter`` -> ``demo``."""
    p = Path(path)
    name = p.stem if p.suffix == ".inter" else p.name
    return name.replace("amazon-", "") or "dataset"


def split_named(text: str, what: str) -> tuple[str | None, str]:
    """``'baby=/data/x'`` -> ('baby', '/data/x'); ``'/data/x'`` -> (None, '/data/x')."""
    name, sep, value = text.partition("=")
    if sep and name and "/" not in name and "\\" not in name:
        return name.strip(), value.strip()
    if not text.strip():
        raise ConfigError(f"empty {what}")
    return None, text.strip()


def spec_from_options(
    spec: ExperimentSpec | None,
    datasets: list[str] = (),
    stores: list[str] = (),
    vanilla_images: list[str] = (),
    vanilla_texts: list[str] = (),
    minilm_stores: list[str] = (),
    backbones: list[str] = (),
    seeds: str | None = None,
    grid: list[str] = (),
    overrides: list[str] = (),
    configs: list[str] = (),
    epochs: int | None = None,
    search: bool | None = None,
) -> ExperimentSpec:
    """Merge command-line options over a spec (options win; list options replace the spec's lists)."""
    from cliper.config.loader import parse_override

    spec = spec.model_copy(deep=True) if spec is not None else ExperimentSpec()
    for text in datasets:
        name, path = split_named(text, "--dataset")
        name = name or dataset_name(path)
        old = spec.datasets.get(name)
        spec.datasets[name] = old.model_copy(update={"path": path}) if old else DatasetEntry(path=path)
    for key, values in (("store", stores), ("image", vanilla_images), ("text", vanilla_texts),
                        ("minilm", minilm_stores)):
        for text in values:
            name, value = split_named(text, f"--{key}")
            targets = [name] if name else list(spec.datasets)
            if name and name not in spec.datasets:
                raise ConfigError(f"--{key} {text!r} names dataset {name!r}, which is not among {sorted(spec.datasets)}")
            if not targets:
                raise ConfigError(f"--{key} given before any --dataset")
            for t in targets:
                setattr(spec.datasets[t], key, value)
    if backbones:
        spec.backbones = [b.strip().lower() for text in backbones for b in text.split(",") if b.strip()]
    if seeds:
        try:
            spec.seeds = [int(s) for s in seeds.replace(" ", "").split(",") if s]
        except ValueError:
            raise ConfigError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
        ExperimentSpec._seeds(spec.seeds)
    for text in grid:
        path, values = parse_override(text)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid axis {text!r} needs a list of values, e.g. model.reg_weight=[1e-4,1e-3]")
        spec.grid[".".join(path)] = coerce_numbers(values)
    for text in overrides:
        path, value = parse_override(text)
        spec.overrides[".".join(path)] = coerce_numbers(value)
    if epochs is not None:
        spec.overrides["train.epochs"] = int(epochs)
    spec.config_files = [*spec.config_files, *[str(c) for c in configs]]
    if search is not None and search:
        spec.search = True
    return spec


def to_override_strings(overrides: dict[str, Any]) -> list[str]:
    """Dotted mapping -> ``key=value`` strings for :func:`cliper.config.load_config` (values as JSON, which is YAML)."""
    return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
