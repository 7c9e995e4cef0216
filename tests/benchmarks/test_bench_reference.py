"""bench_models.py's same-run reference: the independent implementation of a backbone timed in its
own process, and the ratio columns worked out from it (issue 13: a ratio against a baseline
measured in the same run, not against figures from another machine)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cliper.testing import tiny_dataset, write_inter

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_models.py"


def _bench():
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("cliper_bench_models", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_is_found_by_the_backbone_name():
    from cliper.models import available_models

    bench = _bench()
    for name in ("bpr", "lightgcn", "vbpr", "freedom", "slmrec", "dualgnn", "mmgcn", "lattice"):
        assert name in available_models() and bench.has_reference(name)
    assert not bench.has_reference("no_such_model")


def test_reference_cells_are_the_ratios_of_the_two_rows():
    bench = _bench()
    row = {"epoch_s": 2.0, "epoch_cpu_s": 1.6, "peak_rss_gib": 0.75,
           "reference": {"epoch_s": 7.0, "epoch_cpu_s": 6.4, "peak_rss_gib": 1.5, "valid_recall@20": 0.012345}}
    cells = bench.reference_cells(row)
    assert cells["train x ref"] == 3.5 and cells["train x ref cpu"] == 4.0
    assert cells["peak / ref"] == 0.5 and cells["ref GiB"] == 1.5 and cells["ref valid R@20"] == 0.0123
    assert bench.reference_cells({"epoch_s": 1.0}) == {}  # no reference ran: no cells, not zeros
    failed = bench.reference_cells({"epoch_s": 1.0, "reference": {"error": "over --timeout 5 s"}})
    assert failed == {"ref s/epoch": "error: over --timeout 5 s"}


def test_reference_worker_trains_the_independent_model_in_its_own_process(tmp_path):
    write_inter(tiny_dataset(n_users=80, n_items=60, per_user=10, seed=0), tmp_path / "toy.inter")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(BENCH), "--ref-worker", "--dataset", "toy", "--path", str(tmp_path),
           "--model", "vbpr", "--ref-epochs", "2", "--image-dim", "24", "--text-dim", "8", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["model"] == "vbpr" and row["threads"] == 1 and len(row["epoch_s_all"]) == 2
    assert row["epoch_s"] == pytest.approx(sum(row["epoch_s_all"]) / 2)
    assert 0 < row["epoch_cpu_s"] and 0 < row["peak_rss_gib"] < 8
    assert 0.0 <= row["valid_recall@20"] <= 1.0
