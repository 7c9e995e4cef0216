"""Tables re-derived from run folders: the paper's Table 2 (compare), ablations, results, run summaries.

CSV files hold raw metric values (fractions, full precision) so a cell can be checked
against the ``metrics.json`` of the runs it averages; Markdown shows percent (x100),
as the paper does. Every number of a test split is the test score of the model chosen
on validation (best valid epoch; grid winner by valid) -- nothing is picked on test.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from cliper.experiments import stats
from cliper.experiments.collect import features_label, layout_parts, per_user, read_metrics
from cliper.experiments.plan import Unit

log = logging.getLogger("cliper.experiments")

PAPER_METRICS = ("recall", "ndcg")
PAPER_KS = (10, 20, 50)
SHORT = {"recall": "R", "ndcg": "N", "precision": "P", "map": "MAP", "hit": "HR"}
SELECTION_NOTE = ("Selection: early stopping and any hyperparameter grid use the validation split only "
                  "(eval.valid_metric); test values are those of the validation-selected model.")


@dataclass
class Group:
    """The finished seeds of one (dataset, backbone, variant)."""

    dataset: str
    backbone: str
    variant: str
    seeds: list[int] = field(default_factory=list)
    run_dirs: list[Path] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def values(self, split: str, key: str) -> list[float]:
        return [float(m[split][key]) for m in self.metrics if key in m.get(split, {})]

    def by_seed(self, split: str, key: str) -> dict[int, float]:
        return {s: float(m[split][key]) for s, m in zip(self.seeds, self.metrics) if key in m.get(split, {})}

    def mean_std(self, split: str, key: str) -> tuple[float, float]:
        return stats.mean_std(self.values(split, key))

    def per_user(self, key: str) -> list:
        out = []
        for d in self.run_dirs:
            pu = per_user(d)
            if pu is None or key not in pu[1]:
                return []  # a run without per-user values: no paired-over-users test
            out.append((pu[0], pu[1][key]))
        return out


def gather(out: Path, units: Iterable[Unit]) -> dict[tuple[str, str, str], Group]:
    """Group the finished units' folders by (dataset, backbone, variant); unfinished ones are reported and left out."""
    groups: dict[tuple[str, str, str], Group] = {}
    missing = 0
    for u in units:
        key = (u.dataset, u.backbone, u.variant)
        g = groups.setdefault(key, Group(*key))
        d = u.folder(out)
        try:
            m = read_metrics(d)
        except Exception:
            missing += 1
            continue
        g.seeds.append(u.seed)
        g.run_dirs.append(d)
        g.metrics.append(m)
    if missing:
        log.warning("%d run(s) have not finished; the tables leave them out", missing)
    return groups


def _cell(mean: float, std: float, scale: float = 100.0, digits: int = 2) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    s = f"{mean * scale:.{digits}f}"
    if std is not None and math.isfinite(std):
        s += f" ± {std * scale:.{digits}f}"
    return s


def _fmt_p(p: float) -> str:
    return "n/a" if p is None or not math.isfinite(p) else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")


# -- compare (Table 2) ------------------------------------------------------------------------------
def compare_rows(groups: dict, datasets: Sequence[str], backbones: Sequence[str], baseline: str, treatment: str,
                 metrics: Sequence[str] = PAPER_METRICS, ks: Sequence[int] = PAPER_KS) -> list[dict[str, Any]]:
    """One row per (dataset, backbone, metric, K): baseline vs treatment over seeds, improvement, p-values."""
    rows = []
    for ds in datasets:
        for bb in backbones:
            a, b = groups.get((ds, bb, baseline)), groups.get((ds, bb, treatment))
            if a is None or b is None or not a.metrics or not b.metrics:
                continue
            for metric in metrics:
                for k in ks:
                    key = f"{metric}@{k}"
                    am, asd = a.mean_std("test", key)
                    bm, bsd = b.mean_std("test", key)
                    users = stats.paired_users(a.per_user(key), b.per_user(key))
                    n_pairs, p_seeds = stats.paired_seeds(a.by_seed("test", key), b.by_seed("test", key))
                    rows.append({
                        "dataset": ds, "backbone": bb, "metric": metric, "k": k,
                        "baseline": baseline, "treatment": treatment,
                        "baseline_mean": am, "baseline_std": asd, "baseline_n": len(a.values("test", key)),
                        "treatment_mean": bm, "treatment_std": bsd, "treatment_n": len(b.values("test", key)),
                        "improvement_pct": stats.relative_improvement(am, bm),
                        "n_users": users.n, "p_users_wilcoxon": users.p_wilcoxon, "p_users_ttest": users.p_ttest,
                        "n_seed_pairs": n_pairs, "p_seeds_ttest": p_seeds,
                        "significant": bool(math.isfinite(users.p_wilcoxon) and users.p_wilcoxon < stats.SIGNIFICANCE_LEVEL),
                        "baseline_seeds": ";".join(map(str, a.seeds)), "treatment_seeds": ";".join(map(str, b.seeds)),
                        "baseline_runs": ";".join(str(d) for d in a.run_dirs),
                        "treatment_runs": ";".join(str(d) for d in b.run_dirs),
                    })
    return rows


def compare_markdown(rows: list[dict[str, Any]], title: str = "Vanilla vs CLIPER") -> str:
    """The paper's Table 2 layout: rows (dataset, R@K / N@K, K), per backbone baseline | treatment | improvement."""
    if not rows:
        return f"# {title}\n\nNo finished pairs of runs yet.\n"
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    base, treat = rows[0]["baseline"], rows[0]["treatment"]
    index = {(r["dataset"], r["backbone"], r["metric"], r["k"]): r for r in rows}
    head = ["Dataset", "Metric", "K"]
    for bb in backbones:
        head += [f"{bb} {base}", f"{bb} {treat}", f"{bb} improv."]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    seen = list(dict.fromkeys((r["dataset"], r["metric"], r["k"]) for r in rows))
    for ds, metric, k in seen:
        cells = [ds, f"{SHORT.get(metric, metric)}@K", str(k)]
        for bb in backbones:
            r = index.get((ds, bb, metric, k))
            if r is None:
                cells += ["", "", ""]
                continue
            imp = r["improvement_pct"]
            imp_s = "n/a" if not math.isfinite(imp) else f"{imp:+.2f}%" + ("*" if r["significant"] else "")
            cells += [_cell(r["baseline_mean"], r["baseline_std"]), _cell(r["treatment_mean"], r["treatment_std"]), imp_s]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({r["baseline_n"] for r in rows} | {r["treatment_n"] for r in rows})
    lines += [
        "",
        f"Values: test metrics in percent, mean ± sample standard deviation over seeds ({'/'.join(map(str, seeds))} "
        "seeds per cell). Improvement: (treatment mean - baseline mean) / baseline mean.",
        stats.TEST_NOTE,
        SELECTION_NOTE,
        "",
    ]
    return "\n".join(lines)


# -- every variant's results --------------------------------------------------------------------------
def results_rows(groups: dict) -> list[dict[str, Any]]:
    """Long format: one row per (dataset, backbone, variant, split, metric) with mean, std and the seeds."""
    rows = []
    for (ds, bb, var), g in groups.items():
        if not g.metrics:
            continue
        keys = list(dict.fromkeys(k for m in g.metrics for split in ("valid", "test") for k in m.get(split, {})))
        for split in ("valid", "test"):
            for key in keys:
                vals = g.values(split, key)
                if not vals:
                    continue
                mean, std = stats.mean_std(vals)
                rows.append({"dataset": ds, "backbone": bb, "variant": var, "split": split, "metric": key,
                             "mean": mean, "std": std, "n_seeds": len(vals), "seeds": ";".join(map(str, g.seeds))})
    return rows


# -- ablations ----------------------------------------------------------------------------------------
def ablation_rows(groups: dict, reference: str, values: dict[str, Any] | None = None,
                  valid_key: str = "recall@20") -> list[dict[str, Any]]:
    """One row per (dataset, backbone, variant): test metrics over seeds, change vs the reference variant."""
    rows = []
    for (ds, bb, var), g in groups.items():
        if not g.metrics:
            continue
        ref = groups.get((ds, bb, reference))
        row: dict[str, Any] = {"dataset": ds, "backbone": bb, "variant": var,
                               "value": (values or {}).get(var, ""), "n_seeds": len(g.metrics),
                               "seeds": ";".join(map(str, g.seeds))}
        row[f"valid_{valid_key}_mean"], row[f"valid_{valid_key}_std"] = g.mean_std("valid", valid_key)
        for metric in PAPER_METRICS:
            for k in PAPER_KS:
                key = f"{metric}@{k}"
                row[f"test_{key}_mean"], row[f"test_{key}_std"] = g.mean_std("test", key)
        key = "recall@20"
        if ref is not None and ref.metrics and var != reference:
            row[f"change_vs_{reference}_{key}_pct"] = stats.relative_improvement(ref.mean_std("test", key)[0],
                                                                                 row[f"test_{key}_mean"])
            row[f"p_users_wilcoxon_{key}"] = stats.paired_users(ref.per_user(key), g.per_user(key)).p_wilcoxon
        else:
            row[f"change_vs_{reference}_{key}_pct"] = 0.0 if var == reference else math.nan
            row[f"p_users_wilcoxon_{key}"] = math.nan
        rows.append(row)
    # mark, per (dataset, backbone), the variant best on VALIDATION (never on test)
    for ds, bb in {(r["dataset"], r["backbone"]) for r in rows}:
        mine = [r for r in rows if r["dataset"] == ds and r["backbone"] == bb]
        best = max(mine, key=lambda r: r[f"valid_{valid_key}_mean"] if math.isfinite(r[f"valid_{valid_key}_mean"]) else -1)
        for r in mine:
            r["best_on_valid"] = r is best
    return rows


def ablation_markdown(rows: list[dict[str, Any]], title: str, reference: str, valid_key: str = "recall@20") -> str:
    if not rows:
        return f"# {title}\n\nNo finished runs yet.\n"
    change_key = f"change_vs_{reference}_recall@20_pct"
    head = ["Dataset", "Backbone", "Variant", f"valid {SHORT['recall']}@20"]
    head += [f"{SHORT[m]}@{k}" for m in PAPER_METRICS for k in PAPER_KS]
    head += [f"ΔR@20 vs {reference}", "p (users)"]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        var = f"**{r['variant']}**" if r.get("best_on_valid") else r["variant"]
        cells = [r["dataset"], r["backbone"], var,
                 _cell(r[f"valid_{valid_key}_mean"], r[f"valid_{valid_key}_std"])]
        cells += [_cell(r[f"test_{m}@{k}_mean"], r[f"test_{m}@{k}_std"]) for m in PAPER_METRICS for k in PAPER_KS]
        ch = r[change_key]
        cells += ["" if r["variant"] == reference else ("n/a" if not math.isfinite(ch) else f"{ch:+.2f}%"),
                  "" if r["variant"] == reference else _fmt_p(r["p_users_wilcoxon_recall@20"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Values: percent, mean ± sample standard deviation over seeds. Bold: the variant with the best mean "
        f"VALIDATION {valid_key} (no variant is chosen on test). ΔR@20: relative change of test R@20 vs "
        f"the reference variant {reference!r}; p: two-sided Wilcoxon signed-rank test paired over test users "
        "(per-user values averaged over seeds) against the reference.",
        SELECTION_NOTE,
        "",
    ]
    return "\n".join(lines)


# -- run summary --------------------------------------------------------------------------------------
def summary_rows(run_dirs: Sequence[Path], root: Path) -> list[dict[str, Any]]:
    rows = []
    for d in run_dirs:
        m = read_metrics(d)
        parts = layout_parts(d) or {}
        key = m.get("valid_metric", "recall@20")
        rows.append({
            "run": str(d.relative_to(root)) if d != root and root in d.parents else str(d),
            "model": m.get("model", parts.get("backbone", "")),
            "dataset": m.get("dataset", parts.get("dataset", "")),
            "features": parts.get("variant") or features_label(m),
            "seed": m.get("seed", parts.get("seed", "")),
            "best_epoch": m.get("best_epoch", ""),
            "grid_point": (m.get("grid") or {}).get("run", ""),
            f"valid_{key}": m.get("valid", {}).get(key, math.nan),
            "test_recall@20": m.get("test", {}).get("recall@20", math.nan),
            "test_ndcg@20": m.get("test", {}).get("ndcg@20", math.nan),
        })
    return rows


def text_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width plain-text table (floats with 4 decimals)."""
    if not rows:
        return "no finished runs found"
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if not math.isfinite(v) else f"{v:.4f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


# -- writers ------------------------------------------------------------------------------------------
def write_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """CSV with every key of every row as a column; floats written with full precision (repr)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return path


def write_text(text: str, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
