"""From a spec to the list of runs (units), each with its folder and resolved config.

Layout: ``OUT/runs/<dataset>/<backbone>/<variant>/seed<k>/`` -- a ``train_run`` folder,
or a ``train_grid`` folder (``grid/NNN`` points, winner chosen on validation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cliper.config.loader import load_config
from cliper.config.schema import RunConfig
from cliper.errors import ConfigError
from cliper.experiments.spec import SOURCE_KEYS, DatasetEntry, ExperimentSpec, to_override_strings

RUNS_DIR = "runs"
_SAFE = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass(frozen=True)
class Unit:
    """One run of an experiment (one seed of one variant of one backbone on one dataset)."""

    dataset: str
    backbone: str
    variant: str
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def folder(self, out: Path) -> Path:
        return Path(out) / RUNS_DIR / self.dataset / self.backbone / self.variant / f"seed{self.seed}"

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.backbone}/{self.variant}/seed{self.seed}"


def check_name(name: str, what: str) -> str:
    if not _SAFE.match(name):
        raise ConfigError(f"{what} name {name!r} must use only letters, digits and . _ + - (it names a folder)")
    return name


def default_featuresets(entry: DatasetEntry, name: str, vanilla_view: str = "global") -> dict[str, dict[str, Any]]:
    """The ``vanilla`` and ``cliper`` feature sets for one dataset (see :mod:`cliper.experiments.spec`)."""
    if entry.image or entry.text:
        vanilla: dict[str, Any] = {"features.image": entry.image, "features.text": entry.text}
        vanilla = {k: v for k, v in vanilla.items() if v}
    elif entry.store:
        vanilla = {"features.store": entry.store, "features.views": [vanilla_view], "features.fusion": "sum"}
    else:
        raise ConfigError(f"dataset {name!r} has no features: give --store {name}=DIR (and/or --image/--text)")
    if not entry.store:
        raise ConfigError(f"dataset {name!r} has no feature store for the CLIPER features: give --store {name}=DIR")
    cliper = {"features.store": entry.store, "features.fusion": "sa", "features.tau": 0.1}
    return {"vanilla": vanilla, "cliper": cliper}


def resolve_variant(entry: DatasetEntry, dataset: str, variant: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """A variant's overrides for one dataset: its feature source filled in from the dataset, then per-dataset extras."""
    out = dict(overrides)
    if not any(k in out for k in SOURCE_KEYS):
        if not entry.store:
            raise ConfigError(f"feature set {variant!r} names no feature source and dataset {dataset!r} has no store")
        out["features.store"] = entry.store
    out.update(entry.featuresets.get(variant, {}))
    return out


def compare_variants(spec: ExperimentSpec, dataset: str) -> dict[str, dict[str, Any]]:
    entry = spec.datasets[dataset]
    if spec.featuresets is None:
        sets = default_featuresets(entry, dataset, spec.vanilla_view)
        return {k: {**v, **entry.featuresets.get(k, {})} for k, v in sets.items()}
    return {k: resolve_variant(entry, dataset, k, v) for k, v in spec.featuresets.items()}


def build_units(spec: ExperimentSpec, variants_for) -> list[Unit]:
    """datasets x backbones x variants x seeds; ``variants_for(dataset, backbone) -> {name: overrides}``."""
    spec.check_ready()
    units = []
    for ds in spec.datasets:
        check_name(ds, "dataset")
        for bb in spec.backbones:
            check_name(bb, "backbone")
            for name, ov in variants_for(ds, bb).items():
                check_name(name, "feature set")
                for seed in spec.seeds:
                    units.append(Unit(ds, bb, name, seed, ov))
    return units


def unit_config(spec: ExperimentSpec, unit: Unit) -> RunConfig:
    """The validated config of one unit: defaults < dataset < model < spec files < spec overrides < variant < unit."""
    entry = spec.datasets[unit.dataset]
    ov: dict[str, Any] = {}
    ov.update(spec.overrides)
    ov.update(unit.overrides)
    ov.update({"dataset.path": entry.path, "dataset.name": unit.dataset, "model.name": unit.backbone,
               "seed": unit.seed})
    if spec.grid:
        ov["grid"] = spec.grid
    strings = to_override_strings({k: v for k, v in ov.items() if k != "grid"})
    if "grid" in ov:
        import json

        strings.append("grid=" + json.dumps(ov["grid"]))
    return load_config(files=spec.config_files, overrides=strings, search=spec.search)
