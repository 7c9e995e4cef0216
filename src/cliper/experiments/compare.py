"""``cliper compare``: every backbone with vanilla and with CLIPER features (the paper's RQ1, Table 2).

With a MiniLM store for a dataset (``DatasetEntry.minilm``, ``--minilm``) a third arm,
``minilm``, is trained too: the paper's vanilla text is MMRec's all-MiniLM-L6-v2 vector,
not one CLIP view. That arm takes its text from the MiniLM store and its image vector
from the CLIP store (the same ``image.npy`` the other arms read), so only the text
differs between the arms. ``arms.md``/``arms.csv`` then list every arm side by side.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from cliper.errors import ConfigError, DataError
from cliper.experiments import plots, tables
from cliper.experiments.collect import check_fusions_trained
from cliper.experiments.plan import Unit, build_units, compare_variants
from cliper.experiments.runner import run_units
from cliper.experiments.spec import ExperimentSpec
from cliper.outputs import exclusive_output

log = logging.getLogger("cliper.experiments")

COMPARE_MD, COMPARE_CSV, COMPARE_PNG, RESULTS_CSV = "compare.md", "compare.csv", "compare.png", "results.csv"
ARMS_MD, ARMS_CSV = "arms.md", "arms.csv"
MINILM_ARM = "minilm"
ARM_LABELS = {MINILM_ARM: "MiniLM text", "vanilla": "CLIP global view", "cliper": "CLIPER multi-view"}
ARM_METRICS = (("recall", 10), ("recall", 20), ("ndcg", 10), ("ndcg", 20))


def minilm_text_path(out: str | Path, dataset: str) -> Path:
    """Where the MiniLM arm's ``[N, d]`` text matrix is written inside the experiment folder."""
    return Path(out) / "features" / dataset / "minilm_text.npy"


def _minilm_variant(spec: ExperimentSpec, dataset: str, out: Path | None) -> dict[str, Any] | None:
    entry = spec.datasets[dataset]
    if not entry.minilm:
        return None
    if not entry.store:
        raise ConfigError(f"dataset {dataset!r}: the MiniLM arm takes its image vector from the CLIP feature "
                          f"store; give --store {dataset}=DIR")
    if out is None:
        raise ConfigError("the MiniLM arm needs the experiment folder (compare_units(spec, out))")
    return {"features.image": str(Path(entry.store) / "image.npy"),
            "features.text": str(minilm_text_path(out, dataset))}


def compare_units(spec: ExperimentSpec, out: str | Path | None = None) -> list[Unit]:
    """Every run of the comparison; ``out`` is needed only when a dataset has a MiniLM store."""
    def variants(ds: str, bb: str) -> dict[str, dict[str, Any]]:
        v = compare_variants(spec, ds)
        for side in (spec.baseline, spec.treatment):
            if side not in v:
                raise ConfigError(f"feature set {side!r} (baseline/treatment) is not among {sorted(v)}")
        arm = _minilm_variant(spec, ds, None if out is None else Path(out))
        if arm is not None and MINILM_ARM not in v:
            v = {MINILM_ARM: arm, **v}
        return v

    return build_units(spec, variants)


def write_minilm_texts(spec: ExperimentSpec, out: Path) -> None:
    """The MiniLM arm's text matrix per dataset: the MiniLM store's single view (or its ``text``/``global`` view).

    Refuses a store of another size than the CLIP store, and an image-encoding (CLIP) store,
    which would make that arm a second CLIP arm.
    """
    from cliper.features.store import FeatureStore, atomic_save_npy

    for ds, entry in spec.datasets.items():
        if not entry.minilm:
            continue
        store = FeatureStore.open(entry.minilm)
        kind = store.manifest.get("encoder", {}).get("kind")
        if kind != "text":
            raise ConfigError(f"--minilm {ds}={entry.minilm}: not a text-only store (encoder kind {kind!r}); make it "
                              "with cliper extract --encoder all-MiniLM-L6-v2 --views mmrec-text")
        names = list(store.view_names)
        view = names[0] if len(names) == 1 else next((v for v in ("text", "global") if v in names), None)
        if view is None:
            raise ConfigError(f"--minilm {ds}={entry.minilm}: several views {names} and none named text or global")
        if entry.store and FeatureStore.open(entry.store).n_items != store.n_items:
            raise DataError(f"the MiniLM store has {store.n_items} items but the CLIP store {entry.store} has "
                            f"{FeatureStore.open(entry.store).n_items}", entry.minilm)
        text = np.ascontiguousarray(np.asarray(store.views[names.index(view)], dtype=np.float32))
        path = minilm_text_path(out, ds)
        if path.is_file():
            old = np.load(path, mmap_mode="r")
            if old.shape == text.shape and np.array_equal(old, text):
                continue  # unchanged: finished runs that read it stay valid
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(path, text)


def run_compare(spec: ExperimentSpec, out: str | Path, progress: bool = True, train: bool = True,
                engine: Any = "local") -> dict[str, Path]:
    """Train (or, with ``train=False``, only report on) every unit, then write the tables and plot.

    ``engine``: ``"local"``, ``"ray"`` or an :class:`cliper.engines.Engine` (see :func:`run_units`).
    """
    out = Path(out)
    units = compare_units(spec, out)
    with exclusive_output(out):
        if train:
            write_minilm_texts(spec, out)
            run_units(spec, units, out, progress=progress, kind="compare", engine=engine)
        return write_compare_report(spec, out, units)


def write_compare_report(spec: ExperimentSpec, out: Path, units: list[Unit]) -> dict[str, Path]:
    check_fusions_trained(out, units)  # an arm with an untrained mlp/attention fusion is not reported
    groups = tables.gather(out, units)
    rows = tables.compare_rows(groups, list(spec.datasets), spec.backbones, spec.baseline, spec.treatment)
    files = {
        "csv": tables.write_csv(rows, out / COMPARE_CSV),
        "md": tables.write_text(tables.compare_markdown(rows, f"{spec.name}: {spec.baseline} vs {spec.treatment}"),
                                out / COMPARE_MD),
        "results": tables.write_csv(tables.results_rows(groups), out / RESULTS_CSV),
        "png": plots.compare_bars(rows, out / COMPARE_PNG),
    }
    arms = list(dict.fromkeys(u.variant for u in units))
    if len(arms) > 2:
        arm_rows = arms_rows(groups, list(spec.datasets), spec.backbones, arms, spec.treatment)
        files["arms_csv"] = tables.write_csv(arm_rows, out / ARMS_CSV)
        files["arms"] = tables.write_text(arms_markdown(arm_rows, f"{spec.name}: every arm"), out / ARMS_MD)
    log.info("compare table: %s (CSV %s, plot %s)", files["md"], files["csv"], files["png"])
    return files


def arms_rows(groups: dict, datasets: list[str], backbones: list[str], arms: list[str],
              treatment: str) -> list[dict[str, Any]]:
    """One row per (dataset, backbone, arm): test mean/std per metric, and the treatment's change over it."""
    rows = []
    for ds in datasets:
        for bb in backbones:
            treat = groups.get((ds, bb, treatment))
            for arm in arms:
                g = groups.get((ds, bb, arm))
                if g is None or not g.metrics:
                    continue
                row: dict[str, Any] = {"dataset": ds, "backbone": bb, "arm": arm, "label": ARM_LABELS.get(arm, arm),
                                       "seeds": ";".join(map(str, g.seeds)),
                                       "runs": ";".join(str(d) for d in g.run_dirs)}
                for metric, k in ARM_METRICS:
                    key = f"{metric}@{k}"
                    mean, std = g.mean_std("test", key)
                    row[f"{key}_mean"], row[f"{key}_std"] = mean, std
                    if treat is not None and treat.metrics and arm != treatment:
                        from cliper.experiments import stats

                        row[f"{key}_{treatment}_improvement_pct"] = stats.relative_improvement(
                            mean, treat.mean_std("test", key)[0])
                rows.append(row)
    return rows


def arms_markdown(rows: list[dict[str, Any]], title: str) -> str:
    """Every arm side by side, in percent (mean ± std over seeds)."""
    head = ["Dataset", "Backbone", "Text features"] + [f"{tables.SHORT.get(m, m)}@{k}" for m, k in ARM_METRICS]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["dataset"], r["backbone"], f"{r['label']} (`{r['arm']}`)"]
        for metric, k in ARM_METRICS:
            mean, std = r[f"{metric}@{k}_mean"], r[f"{metric}@{k}_std"]
            cells.append("n/a" if mean is None or not math.isfinite(mean) else
                         f"{mean * 100:.2f}" + (f" ± {std * 100:.2f}" if std is not None and math.isfinite(std) else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Test metrics in percent of the validation-selected model; every arm has the same image vector "
              "(the CLIP store's), embedding size and budget, so only the text differs.", ""]
    return "\n".join(lines)
