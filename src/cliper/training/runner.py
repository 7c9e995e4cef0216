"""From a validated config to a finished run folder: data, features, model, trainer.

A run folder holds ``config.yaml`` (resolved), ``epochs.jsonl``, ``checkpoint.pt``
(resumable state), ``best.pt`` (weights at the best valid epoch) and ``metrics.json``
(valid and test metrics at that epoch, plus provenance).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from cliper import __version__, faults, provenance
from cliper.config.loader import expand_grid, validate_model_params
from cliper.config.schema import RunConfig
from cliper.data.interactions import InteractionData, load_inter
from cliper.atomic import atomic_write_text
from cliper.errors import CliperError, ConfigError, DataError
from cliper.evaluation.evaluator import Evaluator
from cliper.features.item_features import ItemFeatures
from cliper.graphs.knn_search import KnnSearch
from cliper.models.base import ModelContext, Recommender
from cliper.models.registry import get_model_class
from cliper.outputs import exclusive_output
from cliper.runtime import apply_memory_settings, set_threads
from cliper.training.seed import seed_everything
from cliper.training.trainer import BEST, CHECKPOINT, Trainer

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
PER_USER_FILE = "test_per_user.npz"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return dev


def cache_dir() -> Path:
    """Where derived artefacts (kNN graphs, user graphs) are cached: ``$CLIPER_CACHE_DIR`` or ~/.cache/cliper."""
    return Path(os.environ.get("CLIPER_CACHE_DIR", Path.home() / ".cache" / "cliper"))


def find_inter(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        found = sorted(p.glob("*.inter"))
        if len(found) != 1:
            raise DataError(f"expected exactly one *.inter file in the folder, found {len(found)}", p)
        return found[0]
    if not p.exists():
        raise DataError("dataset not found", p)
    return p


def load_dataset(cfg: RunConfig) -> InteractionData:
    if not cfg.dataset.path:
        raise ConfigError("no dataset: pass --dataset DIR or set dataset.path")
    inter = find_inter(cfg.dataset.path)
    data = load_inter(inter, name=cfg.dataset.name or inter.stem)
    for label, split in enumerate(("valid", "test"), 1):
        if len(data.split(split)) == 0:  # early stopping / the reported metrics would be silently 0
            raise DataError(f"no {split} interactions (x_label {label}) for users with train items; "
                            "training needs both to select and report (split it with `cliper data build`)", inter)
    return data


def uses_features(cfg: RunConfig) -> bool:
    """Whether ``cfg``'s model reads item features: ID-only models (``modalities == ()``) never load
    the configured files, which would only add their size to the run's memory."""
    return cfg.features.configured and bool(get_model_class(cfg.model_name).modalities)


def build_features(cfg: RunConfig, n_items: int) -> ItemFeatures | None:
    f = cfg.features
    if f.store:
        return ItemFeatures.from_store(f.store, fusion=f.fusion, tau=f.tau, views=f.views,
                                       use_image=f.use_image, use_text=f.use_text, n_items=n_items)
    if f.image or f.text:
        return ItemFeatures.from_files(f.image if f.use_image else None, f.text if f.use_text else None,
                                       n_items=n_items)
    if f.random_image_dim or f.random_text_dim:
        return ItemFeatures.random(n_items, f.random_image_dim if f.use_image else None,
                                   f.random_text_dim if f.use_text else None, seed=f.random_seed)
    return None


def build_model(cfg: RunConfig, data: InteractionData, features: ItemFeatures | None,
                device: torch.device | None = None, own_features: bool = False) -> Recommender:
    """Seed, then construct the configured model on ``data``'s train graph.

    A model owns (and may train) its features' fusion: it gets a fork (own fusion weights, the
    shared read-only arrays) unless ``own_features`` says the caller hands them over."""
    device = device or resolve_device(cfg.device)
    cls = get_model_class(cfg.model_name)
    params = validate_model_params(cfg)
    seed_everything(cfg.seed)
    if features is not None and not cls.modalities:
        features = None  # an ID-only model never reads them
    if features is not None:
        features = (features if own_features else features.fork()).to(device)
        features.reset_parameters()  # trainable fusion starts from the seeded initialisation
    ctx = ModelContext(train=data.train_view(), features=features, cache_dir=cache_dir(), device=device,
                       knn=KnnSearch.from_config(cfg.graph))
    return cls(ctx, params).to(device)


def make_evaluator(cfg: RunConfig, data: InteractionData, device: torch.device) -> Evaluator:
    return Evaluator(data, cfg.eval.topk, cfg.eval.metrics, cfg.eval.batch_size, device=device)


def code_version() -> str:
    """``cliper`` version plus the git commit when run from a checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def save_config(cfg: RunConfig, run_dir: Path) -> None:
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False), encoding="utf-8")


def load_run_config(run_dir: Path) -> RunConfig:
    from cliper.config.loader import validate

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CliperError(f"{run_dir} is not a run folder (no {CONFIG_FILE})")
    try:  # safe_load: YAML tags that would build Python objects are refused
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(f"invalid run config ({str(exc).splitlines()[0]})", path) from None
    return validate(raw)


def run_inputs(cfg: RunConfig) -> dict[str, Any]:
    """Hashes of the files a run reads (its ``.inter``, feature store, vanilla feature files)."""
    f = cfg.features
    store = f.store if f.configured and f.store else None
    image = f.image if f.configured and not store and f.image and f.use_image else None
    text = f.text if f.configured and not store and f.text and f.use_text else None
    return provenance.snapshot(dataset=find_inter(cfg.dataset.path) if cfg.dataset.path else None,
                               store=store, image=image, text=text)


def verify_run_folder(run_dir: str | Path, action: str) -> None:
    """:func:`cliper.provenance.verify` on a run folder, or on every point of a grid folder."""
    run_dir = Path(run_dir)
    points = sorted((run_dir / "grid").glob("[0-9][0-9][0-9]")) if (run_dir / "grid.json").is_file() else []
    for d in points or [run_dir]:
        provenance.verify(d, action)


def train_run(cfg: RunConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
              data: InteractionData | None = None, features: ItemFeatures | None = None) -> dict[str, Any]:
    """Train one configuration into ``run_dir`` and return the metrics dictionary.

    The folder is held exclusively (:func:`cliper.outputs.exclusive_output`) while training;
    resuming, or reusing a finished run, first checks its recorded inputs (provenance).
    """
    if cfg.grid:
        raise ConfigError("train_run takes a single configuration; use train_grid for a grid")
    run_dir = Path(run_dir)
    with exclusive_output(run_dir):
        return _train_run(cfg, run_dir, resume, progress, data, features)


def _train_run(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool, data: InteractionData | None,
               features: ItemFeatures | None) -> dict[str, Any]:
    if (run_dir / METRICS_FILE).is_file() and not resume:
        raise CliperError(f"{run_dir} already holds a finished run; choose another --output or pass --resume")
    if (run_dir / CHECKPOINT).is_file() and not resume:
        raise CliperError(f"{run_dir} holds an interrupted run; pass --resume to continue it")
    if resume and (run_dir / CONFIG_FILE).is_file():
        old = load_run_config(run_dir)
        if old.model_dump() != cfg.model_dump():
            raise CliperError(f"{run_dir} was started with a different config; resume it with the same options")
    if resume and (run_dir / METRICS_FILE).is_file():
        provenance.verify(run_dir, "reuse the finished run")
        return json.loads((run_dir / METRICS_FILE).read_text())
    resuming = resume and (run_dir / CHECKPOINT).is_file()
    if resuming and provenance.recorded(run_dir) is not None:
        provenance.verify(run_dir, "resume")
        inputs = provenance.recorded(run_dir)
    else:
        inputs = run_inputs(cfg)
    save_config(cfg, run_dir)
    provenance.record(run_dir, inputs)
    threads = set_threads(cfg.threads)
    rt = cfg.runtime
    apply_memory_settings(rt.keep_freed_memory, rt.freed_memory_cap_mib, rt.huge_pages)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    data = data or load_dataset(cfg)
    own = features is None
    if own and uses_features(cfg):
        features = build_features(cfg, data.n_items)
    model = build_model(cfg, data, features, device, own_features=own)
    features = None  # the model holds its own copy
    trainer = Trainer(model, data, make_evaluator(cfg, data, device), cfg.train, cfg.eval.valid_metric,
                      cfg.seed, run_dir, progress=progress, device=device)
    if resume:
        trainer.resume()
    result = trainer.fit()
    faults.kill_point("train.fitted")
    _save_test_per_user(model, trainer.evaluator, run_dir)
    metrics = {
        "model": cfg.model_name,
        "dataset": data.name,
        "seed": cfg.seed,
        **result.to_json(),
        "valid_metric": cfg.eval.valid_metric,
        "n_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "threads": threads,
        "precision": cfg.train.precision,
        "code_version": code_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "features": _feature_provenance(cfg),
        "fusion": fusion_record(model),
        "inputs": inputs,
    }
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics


def fusion_record(model: Recommender) -> dict[str, Any] | None:
    """The fusion of the reported (best-valid) weights: method, trainable, largest weight change since init.

    ``cliper ablate --kind fusion`` refuses a trainable fusion whose weights never moved."""
    features = getattr(model, "features", None)
    if features is None or features.fusion is None:
        return None
    return {"method": features.fusion_method, "trainable": features.trainable,
            "weight_change": features.fusion_change()}


def _save_test_per_user(model: Recommender, evaluator: Evaluator, run_dir: Path) -> None:
    """Per-user test metrics of the best-valid weights (``test_per_user.npz``), for paired tests."""
    import numpy as np

    from cliper.training import checkpoint

    best = run_dir / BEST
    if best.is_file():
        model.load_state_dict(checkpoint.load(best))
    users, per_user = evaluator.evaluate_per_user(model, "test")
    np.savez_compressed(run_dir / PER_USER_FILE, users=users,
                        **{k.replace("@", "_at_"): v.astype(np.float32) for k, v in per_user.items()})


def load_per_user(run_dir: str | Path) -> tuple["np.ndarray", dict[str, "np.ndarray"]]:
    """Inverse of :func:`_save_test_per_user`: (users, ``metric@K`` -> per-user test values)."""
    import zipfile

    import numpy as np

    path = Path(run_dir) / PER_USER_FILE
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["users"], {k.replace("_at_", "@"): z[k] for k in z.files if k != "users"}
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:  # pickled object arrays are refused, not loaded
        raise DataError(f"unreadable per-user metrics ({exc})", path) from None


def _feature_provenance(cfg: RunConfig) -> dict[str, Any] | None:
    f = cfg.features
    if not f.configured:
        return None
    out: dict[str, Any] = f.model_dump()
    if f.store:
        manifest = Path(f.store) / "manifest.json"
        if manifest.is_file():
            import hashlib

            out["manifest_sha256"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
    return out


@dataclass(frozen=True)
class TrainJob:
    """One training -- a config and its folder -- the unit every engine runs (:func:`run_job`)."""

    cfg: RunConfig
    run_dir: str
    resume: bool = True
    progress: bool = False
    label: str = ""


_SHARED: dict[str, Any] = {}  # one entry: the last (dataset, features) loaded by run_job in this process


def _inputs_key(cfg: RunConfig) -> str:
    """What the loaded data and features depend on, file modification times included."""
    stamps = []
    for f in (cfg.dataset.path, cfg.features.store and str(Path(cfg.features.store) / "manifest.json"),
              cfg.features.image, cfg.features.text):
        p = Path(f) if f else None
        stamps.append(p.stat().st_mtime_ns if p is not None and p.exists() else None)
    return json.dumps([cfg.dataset.model_dump(mode="json"), cfg.features.model_dump(mode="json"), stamps],
                      sort_keys=True, default=str)


def shared_inputs(cfg: RunConfig) -> tuple[InteractionData, ItemFeatures | None]:
    """The dataset and features of ``cfg``, reused by the next job with the same ones (grid points,
    seeds): a model deep-copies its features, so sharing them changes no result."""
    key = _inputs_key(cfg)
    if _SHARED.get("key") != key:
        _SHARED.clear()
        data = load_dataset(cfg)
        features = build_features(cfg, data.n_items) if uses_features(cfg) else None
        _SHARED.update(key=key, value=(data, features))
    return _SHARED["value"]


def run_job(job: TrainJob) -> dict[str, Any]:
    """Train one job (or read back its finished metrics) -- the same call on every engine."""
    run_dir = Path(job.run_dir)
    if job.resume and (run_dir / METRICS_FILE).is_file():
        return train_run(job.cfg, run_dir, resume=True, progress=job.progress)
    data, features = shared_inputs(job.cfg)
    return train_run(job.cfg, run_dir, resume=job.resume, progress=job.progress, data=data, features=features)


SKIPPED_FILE = "skipped.json"  # a grid point that diverged or whose combination the model refuses


def run_grid_point(job: TrainJob) -> dict[str, Any]:
    """:func:`run_job` for one grid point, where a diverging loss or a refused combination is an outcome.

    A point whose loss becomes NaN/inf (e.g. a reference grid's learning rate 1.0), or whose
    parameters the model refuses (``ConfigError``, e.g. a trainable fusion with FREEDOM's
    ``reg_weight: 0``), is recorded in ``skipped.json`` and left out of the selection, as the
    reference toolbox skips NaN runs; a re-run reads the record back instead of training again.
    Any other error still fails the point.
    """
    run_dir = Path(job.run_dir)
    if job.resume and (run_dir / SKIPPED_FILE).is_file():
        return json.loads((run_dir / SKIPPED_FILE).read_text(encoding="utf-8"))
    try:
        return run_job(job)
    except (FloatingPointError, ConfigError) as exc:
        record = {"skipped": "diverged" if isinstance(exc, FloatingPointError) else "refused", "reason": str(exc)}
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / SKIPPED_FILE, json.dumps(record, indent=2))
        log.warning("%s %s: %s", job.label or run_dir.name, record["skipped"], exc)
        return record


def plan_grid(cfg: RunConfig, out_dir: str | Path, resume: bool = False, progress: bool = True) -> list[tuple[dict, TrainJob]]:
    """Every grid point as ``(assignment, job)`` in ``out_dir/grid/NNN`` (finished points are resumed)."""
    out_dir = Path(out_dir)
    points = expand_grid(cfg)
    plan = []
    for i, (assignment, point_cfg) in enumerate(points):
        run_dir = out_dir / "grid" / f"{i:03d}"
        done = (run_dir / METRICS_FILE).is_file() or (run_dir / SKIPPED_FILE).is_file()
        plan.append((assignment, TrainJob(point_cfg, str(run_dir), resume=done or resume, progress=progress,
                                          label=f"grid point {i + 1}/{len(points)} {assignment}")))
    return plan


def collect_grid(cfg: RunConfig, out_dir: str | Path, points: list[tuple[dict, TrainJob]],
                 metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Choose the winner on VALIDATION and write ``grid.json`` and the grid's ``metrics.json``."""
    out_dir = Path(out_dir)
    rows, skipped = [], []
    for (assignment, job), m in zip(points, metrics):
        row = {"run": str(Path(job.run_dir).relative_to(out_dir)), "params": assignment}
        if "skipped" in m:
            skipped.append({**row, "skipped": m["skipped"], "reason": m["reason"]})
            continue
        rows.append({**row, "valid": m["valid"], "test": m["test"], "best_epoch": m["best_epoch"]})
    if not rows:
        raise CliperError(f"every one of the {len(points)} grid points was skipped (diverged or refused); first: "
                          f"{skipped[0]['params']}: {skipped[0]['reason']}")
    key = cfg.eval.valid_metric
    winner = max(range(len(rows)), key=lambda j: rows[j]["valid"].get(key, float("-inf")))
    summary = {
        "selected_by": f"valid {key}",
        "winner": rows[winner],
        "runs": rows,
        "skipped": skipped,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir)
    (out_dir / "grid.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    win_metrics = json.loads((out_dir / rows[winner]["run"] / METRICS_FILE).read_text())
    win_metrics["grid"] = {"selected_by": summary["selected_by"], "params": rows[winner]["params"],
                           "run": rows[winner]["run"], "n_points": len(rows) + len(skipped),
                           "n_skipped": len(skipped)}
    (out_dir / METRICS_FILE).write_text(json.dumps(win_metrics, indent=2), encoding="utf-8")
    return win_metrics


def train_grid(cfg: RunConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
               engine: Any = "local") -> dict[str, Any]:
    """Train every grid point into ``out_dir/grid/NNN``; the winner is chosen on VALIDATION only.

    Finished grid points are reused when the grid is re-run (interrupted grids resume).
    ``engine`` (``"local"``, ``"ray"`` or an :class:`cliper.engines.Engine`) runs the points;
    with ``ray`` each point is a Ray task, failures are listed once all points have ended.
    ``out_dir`` is held exclusively meanwhile.
    """
    with exclusive_output(out_dir):
        return _train_grid(cfg, Path(out_dir), resume, progress, engine)


def _train_grid(cfg: RunConfig, out_dir: Path, resume: bool, progress: bool, engine: Any) -> dict[str, Any]:
    from cliper.engines import get_engine

    points = plan_grid(cfg, out_dir, resume=resume, progress=progress)
    eng = get_engine(engine)
    try:
        if eng.name == "local":
            shared_inputs(cfg)  # a wrong dataset or store fails before the first point
        metrics: list[dict[str, Any] | None] = [None] * len(points)
        failed = []
        for i, (assignment, job) in enumerate(points):
            log.info("grid point %d/%d %s%s", i + 1, len(points), assignment, " (done)" if job.resume and
                     (Path(job.run_dir) / METRICS_FILE).is_file() else "")
        jobs = [job if eng.name == "local" else replace(job, progress=False) for _, job in points]
        for oc in eng.run_tasks(run_grid_point, jobs):
            if oc.ok:
                metrics[oc.index] = oc.value
            else:
                failed.append(f"{Path(points[oc.index][1].run_dir).name} {points[oc.index][0]}: {oc.error}")
                log.error("grid point %s failed: %s", points[oc.index][0], oc.error)
    finally:
        if isinstance(engine, str) or engine is None:
            eng.close()
    if failed:
        raise CliperError(f"{len(failed)} of {len(points)} grid points failed ({'; '.join(failed)}); "
                          "re-run the same command with --resume to retry them (finished points are reused)")
    return collect_grid(cfg, out_dir, points, metrics)  # type: ignore[arg-type]


def load_trained(run_dir: str | Path, which: str = "best") -> tuple[RunConfig, InteractionData, Recommender]:
    """Rebuild a run's model with its best (or last-checkpoint) weights."""
    from cliper.training import checkpoint

    run_dir = Path(run_dir)
    if (run_dir / "grid.json").is_file():
        winner = json.loads((run_dir / "grid.json").read_text())["winner"]["run"]
        run_dir = run_dir / winner
    cfg = load_run_config(run_dir)
    provenance.verify(run_dir, "evaluate")
    data = load_dataset(cfg)
    features = build_features(cfg, data.n_items) if uses_features(cfg) else None
    model = build_model(cfg, data, features, own_features=True)
    path = run_dir / (BEST if which == "best" else CHECKPOINT)
    if not path.is_file():
        raise CliperError(f"{path} not found: the run has no saved weights yet")
    state = checkpoint.load(path)
    model.load_state_dict(state["model"] if which != "best" else state)
    return cfg, data, model
