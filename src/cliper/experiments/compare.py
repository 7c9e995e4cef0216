"""``cliper compare``: every backbone with vanilla and with CLIPER features (the paper's RQ1, Table 2)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cliper.errors import ConfigError
from cliper.experiments import plots, tables
from cliper.experiments.plan import Unit, build_units, compare_variants
from cliper.experiments.runner import run_units
from cliper.experiments.spec import ExperimentSpec
from cliper.outputs import exclusive_output

log = logging.getLogger("cliper.experiments")

COMPARE_MD, COMPARE_CSV, COMPARE_PNG, RESULTS_CSV = "compare.md", "compare.csv", "compare.png", "results.csv"


def compare_units(spec: ExperimentSpec) -> list[Unit]:
    def variants(ds: str, bb: str) -> dict[str, dict[str, Any]]:
        v = compare_variants(spec, ds)
        for side in (spec.baseline, spec.treatment):
            if side not in v:
                raise ConfigError(f"feature set {side!r} (baseline/treatment) is not among {sorted(v)}")
        return v

    return build_units(spec, variants)


def run_compare(spec: ExperimentSpec, out: str | Path, progress: bool = True, train: bool = True,
                engine: Any = "local") -> dict[str, Path]:
    """Train (or, with ``train=False``, only report on) every unit, then write the tables and plot.

    ``engine``: ``"local"``, ``"ray"`` or an :class:`cliper.engines.Engine` (see :func:`run_units`).
    """
    out = Path(out)
    units = compare_units(spec)
    with exclusive_output(out):
        if train:
            run_units(spec, units, out, progress=progress, kind="compare", engine=engine)
        return write_compare_report(spec, out, units)


def write_compare_report(spec: ExperimentSpec, out: Path, units: list[Unit]) -> dict[str, Path]:
    groups = tables.gather(out, units)
    rows = tables.compare_rows(groups, list(spec.datasets), spec.backbones, spec.baseline, spec.treatment)
    files = {
        "csv": tables.write_csv(rows, out / COMPARE_CSV),
        "md": tables.write_text(tables.compare_markdown(rows, f"{spec.name}: {spec.baseline} vs {spec.treatment}"),
                                out / COMPARE_MD),
        "results": tables.write_csv(tables.results_rows(groups), out / RESULTS_CSV),
        "png": plots.compare_bars(rows, out / COMPARE_PNG),
    }
    log.info("compare table: %s (CSV %s, plot %s)", files["md"], files["csv"], files["png"])
    return files
