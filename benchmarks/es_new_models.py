"""Train MGCN / LGMRec / DRAGON / SMORE to early stopping with ``cliper train`` (plumbing check).

One model per call, in a fresh ``cliper train`` process run under ``/usr/bin/time -v`` (its
peak RSS is the process's own): the real graph, the dataset's packaged config, the model's
packaged YAML defaults, patience as configured, SEEDED RANDOM 4096-d image + 384-d text
features (``features.random_*_dim``; the same features bench_models.py uses). The row of the
model in ``benchmarks/results/models_new_<dataset>.json`` is replaced (other rows kept), so
the models can be run one after another:

    python benchmarks/es_new_models.py --model smore --dataset baby --out runs/es

``--record-run DIR --time-log F`` records a run that was interrupted and then finished with
``cliper train --resume`` under ``/usr/bin/time -v`` (F): the whole epoch log, the finishing
process's peak.

``--summarise-run DIR --peak-gib X`` records a run that had to be stopped before early
stopping (time budget) from its ``epochs.jsonl``: "stopped early" is then false, the best
epoch is the best valid epoch so far, the test columns come from ``--test-json`` (``cliper
evaluate`` of its best.pt, saved as {metric: value}) or stay empty, and the peak is the one
read from the process (``VmHWM`` in ``/proc/<pid>/status``) before it was stopped.

With random features the scores say nothing about the method: they check that training,
validation, early stopping and testing work end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from results_io import RESULTS_DIR, write_result

DATASETS = {"baby": "amazon-baby", "sports": "amazon-sports"}
COLUMNS = ["dataset", "model", "stopped early", "epochs run", "best epoch", "valid R@20", "valid N@20",
           "test R@20", "test N@20", "s/epoch", "s/eval", "wall s", "peak RSS GiB", "threads"]


def _eval_seconds(row: dict) -> float:
    """Valid + test seconds of one epoch-log row (older logs have one ``eval_seconds``)."""
    if "eval_seconds" in row:
        return row["eval_seconds"]
    return row.get("valid_seconds", 0.0) + row.get("test_seconds", 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default="baby", choices=sorted(DATASETS))
    ap.add_argument("--out", default="runs/es", help="parent folder of the run folders")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summarise-run", help="record an interrupted run folder instead of training")
    ap.add_argument("--peak-gib", type=float, help="peak RSS of the interrupted run's process")
    ap.add_argument("--test-json", help="test metrics of the interrupted run's best.pt ({metric: value})")
    ap.add_argument("--record-run", help="record a finished (resumed) run folder: its metrics.json and epochs.jsonl")
    ap.add_argument("--time-log", help="with --record-run: the /usr/bin/time -v output of the process that finished it")
    ap.add_argument("-o", "--override", action="append", default=[])
    args = ap.parse_args()
    if args.record_run:
        record(args, finished_row(Path(args.record_run), Path(args.time_log).read_text(), args))
        return
    if args.summarise_run:
        record(args, summarise(Path(args.summarise_run), args))
        return

    shared = Path(os.environ.get("CLIPER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    run_dir = Path(args.out) / f"{args.model}-{args.dataset}"
    if run_dir.exists():
        sys.exit(f"error: {run_dir} exists; remove it or choose another --out")
    cliper = Path(sys.executable).with_name("cliper")
    cmd = ["/usr/bin/time", "-v", str(cliper), "train", "-d", str(shared / DATASETS[args.dataset]),
           "-m", args.model, "--output", str(run_dir), "-q",
           "-o", "features.random_image_dim=4096", "-o", "features.random_text_dim=384",
           "-o", f"threads={args.threads}"]
    for o in args.override:
        cmd += ["-o", o]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit("error: cliper train failed: " + " | ".join(proc.stderr.strip().splitlines()[-3:]))
    row = finished_row(run_dir, proc.stderr, args)
    row["wall s"] = round(wall, 1)
    record(args, row)


def _epochs(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "epochs.jsonl").read_text().splitlines() if line.strip()]


def finished_row(run_dir: Path, time_text: str, args) -> dict:
    """The row of a run that reached its end, from its metrics.json, its whole epochs.jsonl (so a run
    interrupted and finished with ``cliper train --resume`` counts every epoch) and the
    ``/usr/bin/time -v`` output of the process that finished it (its peak RSS; after a resume the
    earlier process's peak is not known here)."""
    m = json.loads((run_dir / "metrics.json").read_text())
    epochs = _epochs(run_dir)
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_text).group(1))
    return {
        "dataset": args.dataset, "model": args.model, "stopped early": m["stopped_early"],
        "epochs run": m["epochs_run"], "best epoch": m["best_epoch"],
        "valid R@20": round(m["valid"]["recall@20"], 4), "valid N@20": round(m["valid"]["ndcg@20"], 4),
        "test R@20": round(m["test"]["recall@20"], 4), "test N@20": round(m["test"]["ndcg@20"], 4),
        "s/epoch": round(sum(e["train_seconds"] for e in epochs) / len(epochs), 2),
        "s/eval": round(sum(_eval_seconds(e) for e in epochs if "valid" in e) / len(epochs), 2),
        "wall s": None, "peak RSS GiB": round(rss_kib / 2**20, 2), "threads": m.get("threads", args.threads),
    }


def summarise(run_dir: Path, args) -> dict:
    """The row of an interrupted run, from its epochs.jsonl (best valid epoch so far)."""
    epochs = _epochs(run_dir)
    evals = [e for e in epochs if "valid" in e]
    best = [e for e in evals if e.get("best")][-1]  # the trainer flags each improvement
    test = json.loads(Path(args.test_json).read_text()) if args.test_json else {}
    train_s = sum(e["train_seconds"] for e in epochs)
    return {
        "dataset": args.dataset, "model": args.model, "stopped early": False,
        "epochs run": len(epochs), "best epoch": best["epoch"],
        "valid R@20": round(best["valid"]["recall@20"], 4), "valid N@20": round(best["valid"]["ndcg@20"], 4),
        "test R@20": round(test["recall@20"], 4) if test else None,
        "test N@20": round(test["ndcg@20"], 4) if test else None,
        "s/epoch": round(train_s / len(epochs), 2),
        "s/eval": round(sum(_eval_seconds(e) for e in evals) / len(epochs), 2), "wall s": None,
        "peak RSS GiB": args.peak_gib, "threads": args.threads,
    }


def record(args, row: dict) -> None:
    name = f"models_new_{args.dataset}"
    path = RESULTS_DIR / f"{name}.json"
    rows = []
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("columns") == COLUMNS:
            rows = [r for r in old["rows"] if r["model"] != args.model]
    rows.append(row)
    write_result(name, COLUMNS, rows, threads=args.threads, notes=(
        "PLUMBING CHECK with seeded random features (4096-d image, 384-d text), not results of the methods: "
        "`cliper train` on the real graph, packaged dataset + model configs, patience as configured, "
        "one model at a time in a fresh process under nice on a shared 2-core machine (timings are under "
        "load). s/epoch = train seconds / epochs run; s/eval = evaluation seconds / epochs run; "
        "peak RSS = /usr/bin/time -v of the cliper train process. command shows the last model's call; "
        "each row is one call with --model <row's model>. A row with 'stopped early' false was stopped by the "
        "session's time budget before early stopping and recorded with --summarise-run (best valid epoch so "
        "far; test = cliper evaluate of its best.pt; peak = the process's VmHWM when stopped). A row recorded with "
        "--record-run was interrupted and finished with `cliper train --resume` (LGMRec: epochs 1-20 on the "
        "new-models branch, 21-30 and 31-45 on main; same maths): its epochs and seconds are the whole log's, its "
        "peak the finishing process's."))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
