"""Run a list of units through :mod:`cliper.training.runner`, resumably.

A unit whose folder already holds ``metrics.json`` is skipped (after checking that it
was made with the same config); an interrupted one continues from its checkpoint; a
grid re-run reuses its finished points. Training is never re-implemented here.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cliper import faults
from cliper.atomic import atomic_write_text
from cliper.errors import CliperError
from cliper.experiments.plan import Unit, unit_config
from cliper.experiments.spec import ExperimentSpec
from cliper.outputs import exclusive_output
from cliper.training import runner as training

log = logging.getLogger("cliper.experiments")

EXPERIMENT_FILE = "experiment.json"
SPEC_FILE = "spec.yaml"


@dataclass
class UnitResult:
    unit: Unit
    run_dir: Path
    status: str  # trained, skipped, failed
    metrics: dict[str, Any] | None
    seconds: float = 0.0


def _effective(raw: dict[str, Any]) -> dict[str, Any]:
    """A config mapping with the model section completed by the model's defaults (so that a
    packaged default spelled out, or left implicit, compares equal)."""
    from cliper.models.registry import get_model_class

    raw = yaml.safe_load(yaml.safe_dump(raw, sort_keys=False))
    model = dict(raw.get("model") or {})
    try:
        params = get_model_class(model["name"]).Params.model_validate(
            {k: v for k, v in model.items() if k != "name"}).model_dump()
        raw["model"] = {"name": model["name"].lower(), **params}
    except Exception:  # unknown model or invalid params: compare as written
        pass
    return raw


def _same_config(run_dir: Path, cfg) -> bool:
    path = run_dir / training.CONFIG_FILE
    if not path.is_file():
        return True  # nothing to compare (e.g. a folder made by hand)
    old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return _effective(old) == _effective(cfg.model_dump())


def run_units(spec: ExperimentSpec, units: list[Unit], out: str | Path, progress: bool = True,
              plots: bool = True, kind: str = "compare") -> list[UnitResult]:
    """Train every unit into its folder (skipping finished ones) and return their metrics.

    ``out`` is held exclusively meanwhile; a finished unit is reused only after its recorded
    inputs (dataset, feature store) are checked to be unchanged.
    """
    with exclusive_output(out):
        return _run_units(spec, units, Path(out), progress, plots, kind)


def _run_units(spec: ExperimentSpec, units: list[Unit], out: Path, progress: bool, plots: bool,
               kind: str) -> list[UnitResult]:
    (out / SPEC_FILE).write_text(yaml.safe_dump(spec.model_dump(), sort_keys=False), encoding="utf-8")
    configs = [unit_config(spec, u) for u in units]  # validate everything before training anything
    _check_inputs(configs)
    results: list[UnitResult] = []
    n = len(units)
    for i, (unit, cfg) in enumerate(zip(units, configs), 1):
        run_dir = unit.folder(out)
        tag = f"[{i}/{n}] {unit.label}"
        if (run_dir / training.METRICS_FILE).is_file():
            if not _same_config(run_dir, cfg):
                raise CliperError(f"{run_dir} holds a finished run made with a different config; "
                                  "use a new --output folder or delete that run folder")
            training.verify_run_folder(run_dir, "reuse the finished run")
            log.info("%s: done already, skipped", tag)
            metrics = json.loads((run_dir / training.METRICS_FILE).read_text(encoding="utf-8"))
            results.append(UnitResult(unit, run_dir, "skipped", metrics))
        else:
            log.info("%s: start%s", tag, f" (grid of {_grid_size(cfg)})" if cfg.grid else "")
            t0 = time.perf_counter()
            if cfg.grid:
                metrics = training.train_grid(cfg, run_dir, resume=True, progress=progress)
            else:
                metrics = training.train_run(cfg, run_dir, resume=True, progress=progress)
            dt = time.perf_counter() - t0
            key = cfg.eval.valid_metric
            log.info("%s: finished in %.1fs: valid %s %.4f, test %s %.4f (best epoch %s)", tag, dt, key,
                     metrics.get("valid", {}).get(key, float("nan")), key,
                     metrics.get("test", {}).get(key, float("nan")), metrics.get("best_epoch"))
            results.append(UnitResult(unit, run_dir, "trained", metrics, round(dt, 3)))
        if plots:
            _plot(run_dir)
        _write_experiment(out, spec, results, units, kind)
        faults.kill_point("compare.unit")
    return results


def _check_inputs(configs) -> None:
    """Open every dataset and feature store once, so a wrong path fails before hours of training."""
    from cliper.features.store import FeatureStore

    for path in sorted({c.dataset.path for c in configs if c.dataset.path}):
        training.find_inter(path)
    for store in sorted({c.features.store for c in configs if c.features.store}):
        FeatureStore.open(store)
    for f in sorted({p for c in configs for p in (c.features.image, c.features.text) if p}):
        if not Path(f).is_file():
            from cliper.errors import DataError

            raise DataError("feature file not found", f)


def _plot(run_dir: Path) -> None:
    """Training curves for the run (redrawn only when its epoch log is newer than the PNG)."""
    from cliper.experiments.plots import CURVES_FILE, plot_run_curves
    from cliper.training.trainer import EPOCH_LOG

    png = run_dir / CURVES_FILE
    logs = list(run_dir.glob(EPOCH_LOG)) + list(run_dir.glob(f"grid/*/{EPOCH_LOG}"))
    if png.is_file() and all(p.stat().st_mtime <= png.stat().st_mtime for p in logs):
        return
    try:
        plot_run_curves(run_dir)
    except CliperError as exc:  # a folder without an epoch log (made by hand)
        log.debug("no curves for %s: %s", run_dir, exc)


def _grid_size(cfg) -> int:
    size = 1
    for values in cfg.grid.values():
        size *= len(values)
    return size


def _write_experiment(out: Path, spec: ExperimentSpec, results: list[UnitResult], units: list[Unit], kind: str) -> None:
    """``experiment.json``: every unit with its folder, status and provenance (rewritten after each unit)."""
    rows = []
    for r in results:
        m = r.metrics or {}
        feats = m.get("features") or {}
        rows.append({
            "dataset": r.unit.dataset, "backbone": r.unit.backbone, "variant": r.unit.variant,
            "seed": r.unit.seed, "run_dir": str(r.run_dir.relative_to(out)), "status": r.status,
            "seconds": r.seconds, "best_epoch": m.get("best_epoch"),
            "code_version": m.get("code_version"), "manifest_sha256": feats.get("manifest_sha256"),
            "grid": m.get("grid"),
        })
    doc = {"kind": kind, "name": spec.name, "n_units": len(units), "n_finished": len(rows), "units": rows}
    atomic_write_text(out / EXPERIMENT_FILE, json.dumps(doc, indent=2))
