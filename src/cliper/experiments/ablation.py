"""``cliper ablate``: view ablation, fusion comparison, tau and embedding-size sweeps (RQ2, RQ3).

Every variant is the CLIPER feature set (store, SA, tau 0.1 unless the spec's
``cliper`` feature set says otherwise) with one thing changed:

- ``views``: all views; each view dropped in turn (``no-<view>``); the global view only
  (``only-<global>``);
- ``fusion``: ``features.fusion`` in sum, concat, mlp, sa, attention; a trainable fusion
  (mlp, attention) is reported only if its weights moved during training (each run's
  ``metrics.json`` records the change, :func:`check_fusions_trained`): the released code
  reported a random MLP as "MLP";
- ``tau``: ``features.tau`` in 0.05, 0.1, 0.2, 0.5, 0.7;
- ``dim``: ``model.embedding_dim`` (and ``model.feat_embed_dim`` where the backbone has
  one) in 32, 64, 128, 256.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from cliper.errors import CliperError, ConfigError
from cliper.experiments import plots, tables
from cliper.experiments.collect import check_fusions_trained
from cliper.experiments.plan import Unit, build_units, resolve_variant
from cliper.experiments.runner import run_units
from cliper.experiments.spec import ExperimentSpec
from cliper.outputs import exclusive_output

log = logging.getLogger("cliper.experiments")

KINDS = ("views", "fusion", "tau", "dim")
DEFAULT_VALUES: dict[str, list[Any]] = {
    "fusion": ["sum", "concat", "mlp", "sa", "attention"],
    "tau": [0.05, 0.1, 0.2, 0.5, 0.7],
    "dim": [32, 64, 128, 256],
}
REFERENCE_VALUE: dict[str, Any] = {"fusion": "sa", "tau": 0.1, "dim": 64}
DEFAULT_BACKBONE = "freedom"
TITLES = {"views": "View ablation", "fusion": "Fusion comparison", "tau": "Temperature (tau) sweep",
          "dim": "Embedding-size sweep"}


def _variant_name(kind: str, value: Any) -> str:
    return {"fusion": str(value), "tau": f"tau{value}", "dim": f"dim{value}"}[kind]


def _store_views(store: str) -> tuple[list[str], list[str]]:
    from cliper.features.store import FeatureStore

    s = FeatureStore.open(store)
    names = s.view_names
    globals_ = list((s.manifest.get("views") or {}).get("global_views") or [])
    if not globals_ and "global" in names:
        globals_ = ["global"]
    return names, [g for g in globals_ if g in names]


def _has_param(backbone: str, name: str) -> bool:
    from cliper.models.registry import get_model_class

    return name in get_model_class(backbone).Params.model_fields


def parse_values(kind: str, text: str | None) -> list[Any] | None:
    """``--values 0.05,0.1`` -> typed list (floats for tau, ints for dim, names otherwise)."""
    if not text:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        if kind == "tau":
            return [float(t) for t in items]
        if kind == "dim":
            return [int(t) for t in items]
    except ValueError:
        raise ConfigError(f"--values for {kind} must be numbers, got {text!r}") from None
    return items


def ablation_plan(spec: ExperimentSpec, kind: str, values: Sequence[Any] | None = None) -> tuple[list[Unit], str, dict[str, Any]]:
    """(units, reference variant, variant -> swept value)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown ablation {kind!r}; choose one of {', '.join(KINDS)}")
    if not spec.backbones:
        spec.backbones = [DEFAULT_BACKBONE]
    base_raw = (spec.featuresets or {}).get(spec.treatment, {"features.fusion": "sa", "features.tau": 0.1})
    swept: dict[str, Any] = {}
    reference: list[str] = []

    def variants(ds: str, bb: str) -> dict[str, dict[str, Any]]:
        entry = spec.datasets[ds]
        base = resolve_variant(entry, ds, spec.treatment, base_raw)
        out: dict[str, dict[str, Any]] = {}
        if kind == "views":
            store = base.get("features.store")
            if not store:
                raise ConfigError(f"the view ablation needs a feature store for dataset {ds!r}")
            names, globals_ = _store_views(store)
            chosen = list(values) if values else names
            bad = [v for v in chosen if v not in names]
            if bad:
                raise ConfigError(f"views {bad} not in the feature store {store} (has {names})")
            out["all"] = {**base, "features.views": None}
            for v in chosen:
                if len(names) > 1:
                    out[f"no-{v}"] = {**base, "features.views": [n for n in names if n != v]}
            for g in globals_:
                out[f"only-{g}"] = {**base, "features.views": [g]}
            if not globals_:
                log.warning("store %s marks no global view: no only-global variant", store)
            ref = "all"
        else:
            vals = list(values) if values else DEFAULT_VALUES[kind]
            for val in vals:
                name = _variant_name(kind, val)
                if kind == "dim":
                    ov = {"model.embedding_dim": int(val)}
                    if _has_param(bb, "feat_embed_dim"):
                        ov["model.feat_embed_dim"] = int(val)
                    out[name] = {**base, **ov}
                else:
                    out[name] = {**base, f"features.{kind}": val}
                swept[name] = val
            ref_val = REFERENCE_VALUE[kind]
            ref = _variant_name(kind, ref_val) if ref_val in vals else _variant_name(kind, vals[0])
        reference[:] = [ref]
        return out

    units = build_units(spec, variants)
    return units, reference[0], swept


def run_ablation(spec: ExperimentSpec, kind: str, out: str | Path, values: Sequence[Any] | None = None,
                 progress: bool = True, train: bool = True, engine: Any = "local") -> dict[str, Path]:
    """Train the ablation's variants (on ``engine``, see :func:`run_units`), then write its table and plot."""
    out = Path(out)
    units, reference, swept = ablation_plan(spec, kind, values)
    with exclusive_output(out):
        return _ablation(spec, kind, out, units, reference, swept, progress, train, engine)


def _ablation(spec, kind, out, units, reference, swept, progress, train, engine) -> dict[str, Path]:
    if train:
        run_units(spec, units, out, progress=progress, kind=f"ablate-{kind}", engine=engine)
    check_fusions_trained(out, units)  # any kind: a trainable fusion may also be the base feature set's
    groups = tables.gather(out, units)
    valid_key = "recall@20"
    rows = tables.ablation_rows(groups, reference, swept, valid_key=valid_key)
    title = f"{TITLES[kind]} ({spec.name})"
    stem = f"ablation_{kind}"
    files = {
        "csv": tables.write_csv(rows, out / f"{stem}.csv"),
        "md": tables.write_text(tables.ablation_markdown(rows, title, reference, valid_key), out / f"{stem}.md"),
        "png": plots.ablation_plot(rows, out / f"{stem}.png", kind, numeric=kind in ("tau", "dim")),
        "results": tables.write_csv(tables.results_rows(groups), out / f"{stem}_results.csv"),
    }
    log.info("ablation table: %s (CSV %s, plot %s)", files["md"], files["csv"], files["png"])
    return files
