"""Read finished run folders back: metrics, the grid winner's folder, per-user test metrics.

Reports are always re-derived from the run folders (never from in-memory results), so
a table can be rebuilt, and checked, from the folders it summarises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from cliper.errors import CliperError
from cliper.experiments.plan import RUNS_DIR, Unit
from cliper.training.runner import METRICS_FILE, PER_USER_FILE, load_per_user


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise CliperError(f"{run_dir} has no {METRICS_FILE}: the run has not finished")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CliperError(f"{path}: invalid JSON ({exc.msg})") from None


def winner_dir(run_dir: str | Path) -> Path:
    """The folder that holds the selected model: the grid winner (chosen on valid) or the run itself."""
    run_dir = Path(run_dir)
    m = read_metrics(run_dir)
    if m.get("grid"):
        return run_dir / m["grid"]["run"]
    grid = run_dir / "grid.json"
    if grid.is_file():
        return run_dir / json.loads(grid.read_text(encoding="utf-8"))["winner"]["run"]
    return run_dir


def per_user(run_dir: str | Path):
    """(users, {metric@K: values}) of the selected model's test split, or None when not saved."""
    d = winner_dir(run_dir)
    if not (d / PER_USER_FILE).is_file():
        return None
    return load_per_user(d)


def layout_parts(run_dir: Path) -> dict[str, Any] | None:
    """``.../runs/<dataset>/<backbone>/<variant>/seed<k>`` -> its parts, else None."""
    parts = Path(run_dir).parts
    if len(parts) >= 5 and parts[-5] == RUNS_DIR and parts[-1].startswith("seed") and parts[-1][4:].lstrip("-").isdigit():
        return {"dataset": parts[-4], "backbone": parts[-3], "variant": parts[-2], "seed": int(parts[-1][4:])}
    return None


def find_runs(root: str | Path, include_grid_points: bool = False) -> list[Path]:
    """Every folder under ``root`` (itself included) with a ``metrics.json``, sorted.

    Points of a grid (``<grid>/grid/NNN``) are left out unless asked for: the grid folder
    itself stands for its validation-selected winner.
    """
    root = Path(root)
    if not root.exists():
        raise CliperError(f"{root} does not exist")
    found = []
    for m in sorted(root.rglob(METRICS_FILE)):
        d = m.parent
        if not include_grid_points and d.parent.name == "grid" and (d.parent.parent / "grid.json").is_file():
            continue
        found.append(d)
    return found


def features_label(metrics: dict[str, Any]) -> str:
    """A short description of a run's features: ``store:<name> sa tau=0.1 views=[...]``, ``files``, ``random``."""
    f = metrics.get("features")
    if not f:
        return "none"
    if f.get("store"):
        label = f"store:{Path(f['store']).name} {f.get('fusion')}"
        if f.get("fusion") in ("sa", "attention"):
            label += f" tau={f.get('tau')}"
        if f.get("views"):
            label += " views=" + ",".join(f["views"])
        return label
    if f.get("image") or f.get("text"):
        return "files:" + "+".join(k for k in ("image", "text") if f.get(k))
    return "random"


def check_fusions_trained(out: Path, units: Sequence[Unit]) -> None:
    """Refuse to report a trainable fusion (mlp, attention) whose weights did not move in its run
    (``cliper ablate`` and ``cliper compare`` both call it before writing a table).

    Each finished run's ``metrics.json`` says whether its fusion was trainable and how far its
    weights moved, so the fusion set by a spec's overrides, a variant or a unit is checked alike.
    Runs that have not finished are left to the table code (it reports them missing)."""
    untrained = []
    for u in units:
        try:
            metrics = read_metrics(winner_dir(u.folder(out)))
        except CliperError:
            continue
        record = metrics.get("fusion") or {}
        if not record.get("trainable"):
            continue
        change = record.get("weight_change")
        if not isinstance(change, (int, float)) or not change > 0:
            untrained.append(f"{u.label} (weight change {change})")
    if untrained:
        raise CliperError(f"trainable fusion not trained, not reported: {'; '.join(untrained)}")
