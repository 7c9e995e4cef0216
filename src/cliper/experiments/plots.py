"""PNG figures (matplotlib, Agg backend: no display needed).

Training curves for every run; bars for the vanilla/CLIPER comparison; bars or lines
for ablations and sweeps; the view-rank heatmap (the paper's Figure 5) and the
distribution of attention weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cliper.errors import CliperError  # noqa: E402
from cliper.training.trainer import EPOCH_LOG  # noqa: E402

CURVES_FILE = "curves.png"


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def read_epochs(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / EPOCH_LOG
    if not path.is_file():
        raise CliperError(f"{run_dir} has no {EPOCH_LOG} (not a run folder, or no epoch finished yet)")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise CliperError(f"{path}:{n}: invalid JSON line") from None
    if not rows:
        raise CliperError(f"{path} is empty")
    return rows


def training_curves(run_dir: str | Path, output: str | Path | None = None, title: str | None = None) -> Path:
    """Loss per epoch (left) and valid recall/NDCG@K per evaluated epoch (right), best epoch marked."""
    run_dir = Path(run_dir)
    rows = read_epochs(run_dir)
    epochs = [r["epoch"] for r in rows]
    evals = [r for r in rows if "valid" in r]
    best = [r["epoch"] for r in evals if r.get("best")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(epochs, [r["loss"] for r in rows], marker="." if len(rows) < 40 else None, color="tab:red")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax1.set_title("training loss")
    ax1.grid(alpha=0.3)
    if evals:
        keys = [k for k in evals[0]["valid"] if k.split("@")[0] in ("recall", "ndcg")]
        for k in keys:
            ax2.plot([r["epoch"] for r in evals], [r["valid"][k] for r in evals], label=k,
                     marker="." if len(evals) < 40 else None, linestyle="-" if k.startswith("recall") else "--")
        if best:
            ax2.axvline(best[-1], color="grey", linestyle=":", label=f"best epoch {best[-1]}")
        ax2.legend(fontsize=7, ncol=2)
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation metric")
    ax2.set_title("validation metrics")
    ax2.grid(alpha=0.3)
    fig.suptitle(title or str(run_dir), fontsize=8)
    return _save(fig, Path(output) if output else run_dir / CURVES_FILE)


def plot_run_curves(run_dir: str | Path) -> list[Path]:
    """Curves for a run folder; for a grid folder, for each point and (in the grid folder) for the winner."""
    run_dir = Path(run_dir)
    grid = run_dir / "grid.json"
    if not grid.is_file():
        return [training_curves(run_dir)]
    doc = json.loads(grid.read_text(encoding="utf-8"))
    made = []
    for r in doc["runs"]:
        try:
            made.append(training_curves(run_dir / r["run"], title=f"{run_dir} {r['run']} {r['params']}"))
        except CliperError:
            pass
    win = doc["winner"]
    made.append(training_curves(run_dir / win["run"], output=run_dir / CURVES_FILE,
                                title=f"{run_dir}: grid winner {win['run']} {win['params']} (chosen on {doc['selected_by']})"))
    return made


def compare_bars(rows: list[dict[str, Any]], path: str | Path, keys: Sequence[tuple[str, int]] = (("recall", 20), ("ndcg", 20))) -> Path:
    """Baseline vs treatment bars (mean, error bar = std over seeds) per dataset and backbone."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows)) or ["(none)"]
    fig, axes = plt.subplots(len(keys), len(datasets), figsize=(max(4, 3.5 * len(datasets)), 3.2 * len(keys)),
                             squeeze=False)
    for j, ds in enumerate(datasets):
        for i, (metric, k) in enumerate(keys):
            ax = axes[i][j]
            mine = [r for r in rows if r["dataset"] == ds and r["metric"] == metric and r["k"] == k]
            x = np.arange(len(mine))
            w = 0.38
            for off, side, color in ((-w / 2, "baseline", "tab:grey"), (w / 2, "treatment", "tab:blue")):
                means = [100 * r[f"{side}_mean"] for r in mine]
                stds = [100 * r[f"{side}_std"] if math.isfinite(r[f"{side}_std"]) else 0 for r in mine]
                ax.bar(x + off, means, w, yerr=stds, capsize=3, color=color,
                       label=mine[0][side] if mine else side)
            ax.set_xticks(x, [r["backbone"] for r in mine], rotation=30, fontsize=8)
            ax.set_title(f"{ds}: test {metric}@{k} (%)", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
            if mine:
                ax.legend(fontsize=7)
    return _save(fig, path)


def ablation_plot(rows: list[dict[str, Any]], path: str | Path, kind: str, numeric: bool) -> Path:
    """Bars per variant (views, fusion) or a line over the swept value (tau, dim): test R@20 and N@20."""
    combos = list(dict.fromkeys((r["dataset"], r["backbone"]) for r in rows)) or [("(none)", "")]
    fig, axes = plt.subplots(1, 2 * len(combos), figsize=(5 * len(combos) * 2 / 1.6, 3.6), squeeze=False)
    for c, (ds, bb) in enumerate(combos):
        mine = [r for r in rows if r["dataset"] == ds and r["backbone"] == bb]
        if numeric:
            mine.sort(key=lambda r: float(r["value"]))
        for m, key in enumerate(("recall@20", "ndcg@20")):
            ax = axes[0][2 * c + m]
            means = [100 * r[f"test_{key}_mean"] for r in mine]
            stds = [100 * r[f"test_{key}_std"] if math.isfinite(r[f"test_{key}_std"]) else 0 for r in mine]
            if numeric:
                xs = [float(r["value"]) for r in mine]
                ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3)
                ax.set_xscale("log", base=2 if kind == "dim" else 10)
                ax.minorticks_off()
                ax.set_xticks(xs, [str(r["value"]) for r in mine], fontsize=8)
                ax.set_xlabel("tau" if kind == "tau" else "embedding size")
            else:
                colors = ["tab:orange" if r.get("best_on_valid") else "tab:blue" for r in mine]
                ax.bar(range(len(mine)), means, yerr=stds, capsize=3, color=colors)
                ax.set_xticks(range(len(mine)), [r["variant"] for r in mine], rotation=35, fontsize=8, ha="right")
                lo = min((mu - s for mu, s in zip(means, stds)), default=0)
                hi = max((mu + s for mu, s in zip(means, stds)), default=1)
                pad = (hi - lo) * 0.3 or 0.1
                ax.set_ylim(max(0.0, lo - pad), hi + pad / 2)
            note = "" if numeric else " (orange: best on valid)"
            ax.set_title(f"{ds} {bb}: test {key} (%){note}", fontsize=9)
            ax.grid(alpha=0.3)
    return _save(fig, path)


def view_rank_heatmap(counts: np.ndarray, weighted: np.ndarray, view_names: Sequence[str], path: str | Path,
                      title: str = "") -> Path:
    """Rows: rank score 1..V (1 = most similar to the image); columns: views; last row: weighted sum."""
    V = len(view_names)
    grid = counts.T  # [rank, view]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(1.3 * V + 2.5, 0.55 * V + 2.2),
                                  gridspec_kw={"height_ratios": [V, 1.2]}, sharex=True,
                                  layout="constrained")
    im = ax.imshow(grid, cmap="YlOrRd", aspect="auto")
    for r in range(V):
        for v in range(V):
            val = int(grid[r, v])
            ax.text(v, r, str(val), ha="center", va="center", fontsize=8,
                    color="white" if val > grid.max() * 0.6 else "black")
    ax.set_yticks(range(V), [str(r + 1) for r in range(V)])
    ax.set_ylabel("rank score (1 = highest similarity)")
    fig.colorbar(im, ax=[ax, ax2], fraction=0.04, label="items")
    ax.set_title(title or "view rank by view-image similarity", fontsize=9)
    ax2.imshow(weighted[None, :], cmap="Blues_r", aspect="auto")
    for v in range(V):
        ax2.text(v, 0, f"{int(weighted[v])}", ha="center", va="center", fontsize=8)
    ax2.set_yticks([0], ["weighted sum"])
    ax2.set_xticks(range(V), list(view_names), rotation=30, ha="right")
    return _save(fig, path)


def attention_distribution(weights: np.ndarray, view_names: Sequence[str], path: str | Path, tau: float) -> Path:
    """Violin per view of the SA weights softmax(sim / tau) (left) and a histogram per view (right)."""
    V = len(view_names)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    if weights.shape[0] > 1:
        ax1.violinplot([weights[:, v] for v in range(V)], showmeans=True, showextrema=True)
    else:
        ax1.scatter(range(1, V + 1), weights[0])
    ax1.axhline(1.0 / V, color="grey", linestyle=":", label="uniform 1/V")
    ax1.set_xticks(range(1, V + 1), list(view_names), rotation=30, ha="right")
    ax1.set_ylabel("attention weight")
    ax1.set_title(f"SA weights softmax(sim / {tau}) per view", fontsize=9)
    ax1.legend(fontsize=7)
    bins = np.linspace(0, 1, 41)
    for v in range(V):
        ax2.hist(weights[:, v], bins=bins, histtype="step", label=view_names[v])
    ax2.set_xlabel("attention weight")
    ax2.set_ylabel("items")
    ax2.set_yscale("log")
    ax2.legend(fontsize=7)
    ax2.set_title("histogram per view", fontsize=9)
    return _save(fig, path)
