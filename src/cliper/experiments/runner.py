"""Run a list of units through :mod:`cliper.training.runner`, resumably.

A unit whose folder already holds ``metrics.json`` is skipped (after checking that it
was made with the same config); an interrupted one continues from its checkpoint; a
grid re-run reuses its finished points. Training is never re-implemented here.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
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
              plots: bool = True, kind: str = "compare", engine: Any = "local") -> list[UnitResult]:
    """Train every unit into its folder (skipping finished ones) and return their metrics.

    Stages: :func:`plan_units` (configs, finished units, one job per training -- a grid
    point each), the engine runs :func:`timed_job` on every job, :func:`collect_unit`
    turns a unit's finished jobs into its result (the grid winner chosen on validation).
    ``engine="local"`` stops at the first error (as before); ``ray`` runs every job,
    writes what finished, and then lists the failed units in one error. ``out`` is held
    exclusively meanwhile; a finished unit is reused only after its recorded inputs
    (dataset, feature store) are checked to be unchanged.
    """
    with exclusive_output(out):
        return _run_units(spec, units, Path(out), progress, plots, kind, engine)


def _run_units(spec: ExperimentSpec, units: list[Unit], out: Path, progress: bool, plots: bool, kind: str,
               engine: Any) -> list[UnitResult]:
    from cliper.engines import get_engine

    out.mkdir(parents=True, exist_ok=True)
    (out / SPEC_FILE).write_text(yaml.safe_dump(spec.model_dump(), sort_keys=False), encoding="utf-8")
    plan = plan_units(spec, units, out, progress=progress)
    eng = get_engine(engine)
    n = len(units)
    done: dict[int, UnitResult] = {}
    try:
        for i, r in plan.skipped.items():
            log.info("[%d/%d] %s: done already, skipped", i + 1, n, r.unit.label)
            done[i] = r
            _after_unit(out, spec, units, done, r, plots, kind)
        if plan.jobs:
            log.info("%d of %d runs to train (%d trainings) on %s", len(plan.pending), n, len(plan.jobs),
                     eng.describe())
        jobs = [j.job if eng.name == "local" else replace(j.job, progress=False) for j in plan.jobs]
        got: dict[int, dict[int, Any]] = {i: {} for i in plan.pending}
        errors: dict[int, list[str]] = {}
        for oc in eng.run_tasks(timed_job, jobs):
            pj = plan.jobs[oc.index]
            if oc.ok:
                got[pj.unit_index][pj.point] = oc.value
            else:
                errors.setdefault(pj.unit_index, []).append(f"{pj.job.label or 'training'}: {oc.error}")
                log.error("%s: %s failed: %s", units[pj.unit_index].label, pj.job.label or "training", oc.error)
            i = pj.unit_index
            if len(got[i]) + len(errors.get(i, [])) == plan.pending[i] and i not in done:
                if i in errors:
                    done[i] = UnitResult(units[i], units[i].folder(out), "failed", None)
                else:
                    done[i] = collect_unit(units[i], plan.configs[i], out, plan.grids.get(i), got[i])
                    _log_finished(i, n, done[i], plan.configs[i])
                _after_unit(out, spec, units, done, done[i], plots, kind)
    finally:
        if isinstance(engine, str) or engine is None:
            eng.close()
    if errors:
        lines = [f"{units[i].label} ({'; '.join(e)})" for i, e in sorted(errors.items())]
        raise CliperError(f"{len(errors)} of {n} runs failed: {' | '.join(lines)}; re-run the same command to "
                          "retry them (finished runs are reused)")
    return [done[i] for i in sorted(done)]


@dataclass
class PlannedJob:
    unit_index: int
    point: int  # grid point index, 0 for a plain run
    job: training.TrainJob


@dataclass
class UnitPlan:
    """What :func:`run_units` has to do: finished units, and the jobs of the others."""

    configs: list[Any]
    skipped: dict[int, UnitResult]
    pending: dict[int, int]  # unit index -> number of its jobs
    grids: dict[int, list]  # unit index -> training.plan_grid points
    jobs: list[PlannedJob]


def plan_units(spec: ExperimentSpec, units: list[Unit], out: Path, progress: bool = True) -> UnitPlan:
    """Validate every unit's config and inputs, find finished units, and list the trainings left.

    A finished folder made with another config is refused here, before anything trains.
    """
    configs = [unit_config(spec, u) for u in units]  # validate everything before training anything
    _check_inputs(configs)
    plan = UnitPlan(configs, {}, {}, {}, [])
    for i, (unit, cfg) in enumerate(zip(units, configs)):
        run_dir = unit.folder(out)
        if (run_dir / training.METRICS_FILE).is_file():
            if not _same_config(run_dir, cfg):
                raise CliperError(f"{run_dir} holds a finished run made with a different config; "
                                  "use a new --output folder or delete that run folder")
            training.verify_run_folder(run_dir, "reuse the finished run")
            metrics = json.loads((run_dir / training.METRICS_FILE).read_text(encoding="utf-8"))
            plan.skipped[i] = UnitResult(unit, run_dir, "skipped", metrics)
            continue
        if cfg.grid:
            points = training.plan_grid(cfg, run_dir, resume=True, progress=progress)
            plan.grids[i] = points
            for p, (_, job) in enumerate(points):
                plan.jobs.append(PlannedJob(i, p, job))
            plan.pending[i] = len(points)
        else:
            plan.jobs.append(PlannedJob(i, 0, training.TrainJob(cfg, str(run_dir), resume=True, progress=progress,
                                                                label=unit.label)))
            plan.pending[i] = 1
    return plan


FAULT_ENV = "CLIPER_FAULT_EXIT_AFTER_TRAINING"  # test hook "<run folder suffix>:<marker file>"


def timed_job(job: training.TrainJob) -> tuple[dict[str, Any], float]:
    """One training (:func:`cliper.training.runner.run_job`) and its wall time -- what engines run."""
    t0 = time.perf_counter()
    metrics = training.run_job(job)
    _fault_hook(job)
    return metrics, time.perf_counter() - t0


def _fault_hook(job: training.TrainJob) -> None:
    """Test hook: with ``CLIPER_FAULT_EXIT_AFTER_TRAINING=<suffix>:<marker>`` the worker process dies
    (``os._exit``) once, right after finishing the run whose folder ends with ``suffix``, to show
    that the engine re-runs the job and the finished training is read back, not redone."""
    import os

    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    suffix, _, marker = spec.partition(":")
    if Path(job.run_dir).as_posix().endswith(suffix) and marker and not Path(marker).exists():
        Path(marker).write_text(f"worker {os.getpid()} exited after {job.run_dir}\n")
        os._exit(17)


def collect_unit(unit: Unit, cfg, out: Path, grid_points: list | None, got: dict[int, tuple]) -> UnitResult:
    """A unit's result from its finished jobs (for a grid: the validation winner, via collect_grid)."""
    run_dir = unit.folder(out)
    seconds = sum(dt for _, dt in got.values())
    if grid_points is not None:
        metrics = training.collect_grid(cfg, run_dir, grid_points, [got[p][0] for p in range(len(grid_points))])
    else:
        metrics = got[0][0]
    return UnitResult(unit, run_dir, "trained", metrics, round(seconds, 3))


def _log_finished(i: int, n: int, r: UnitResult, cfg) -> None:
    key = cfg.eval.valid_metric
    m = r.metrics or {}
    log.info("[%d/%d] %s: finished in %.1fs: valid %s %.4f, test %s %.4f (best epoch %s)", i + 1, n, r.unit.label,
             r.seconds, key, m.get("valid", {}).get(key, float("nan")), key,
             m.get("test", {}).get(key, float("nan")), m.get("best_epoch"))


def _after_unit(out: Path, spec: ExperimentSpec, units: list[Unit], done: dict[int, UnitResult], r: UnitResult,
                plots: bool, kind: str) -> None:
    if plots and r.status != "failed":
        _plot(r.run_dir)
    _write_experiment(out, spec, [done[i] for i in sorted(done)], units, kind)
    faults.kill_point("compare.unit")


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
