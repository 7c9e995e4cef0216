"""Peak memory of MGCN / LGMRec / DRAGON / SMORE: training batches + a valid and a test pass, fresh process each.

Each model runs in its own subprocess (so ``ru_maxrss`` is its own: Python + torch + graph +
seeded random 4096/384 features + model + optimiser state + evaluation), built as ``cliper
train`` builds it (packaged dataset + model YAML, ``build_model``, a cold kNN cache), trains
``--batches`` batches of epoch 1 with the trainer's own batches and optimiser (0: the whole
epoch), then evaluates the valid and the test split. Every batch runs the same full-graph
forward/backward, so memory is at its steady state after the first few batches. Rows go to
``benchmarks/results/models_new_<dataset>_memory.json``.

    python benchmarks/mem_new_models.py --dataset sports --models mgcn,lgmrec,dragon,smore --batches 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from random_run import add_run_args, batches_per_epoch, build_run, run_parser, time_batches
from results_io import write_result

COLUMNS = ["dataset", "model", "batches", "batches per epoch", "s/batch", "valid s", "test s",
           "peak RSS GiB", "under 4 GiB", "threads"]


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    run = build_run(args.dataset, args.model)  # in the cold CLIPER_CACHE_DIR main() gives this process
    model, evaluator = run.model, run.evaluator
    n_batches = batches_per_epoch(run)
    t = time.perf_counter()
    done = len(time_batches(run.trainer, model, 1, args.batches or None)[0])
    per_batch = (time.perf_counter() - t) / max(done, 1)  # batch drawing included, as before
    t = time.perf_counter()
    evaluator.evaluate(model, "valid")
    valid_s = time.perf_counter() - t
    t = time.perf_counter()
    evaluator.evaluate(model, "test")
    test_s = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"dataset": args.dataset, "model": args.model, "batches": done, "batches per epoch": n_batches,
            "s/batch": round(per_batch, 2), "valid s": round(valid_s, 2), "test s": round(test_s, 2),
            "peak RSS GiB": round(peak, 2), "under 4 GiB": peak < 4.0, "threads": args.threads}


def main() -> None:
    ap = run_parser(__doc__, models="mgcn,lgmrec,dragon,smore", dataset="sports")
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--batches", type=int, default=0, help="training batches (0: one whole epoch)")
    add_run_args(ap, dims=False, override=False)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    rows = []
    for model in args.models.split(","):
        cmd = [sys.executable, __file__, "--worker", "--model", model, "--dataset", args.dataset,
               "--batches", str(args.batches), "--threads", str(args.threads)]
        with tempfile.TemporaryDirectory(prefix="cliper-mem-cache-") as cold:
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CLIPER_CACHE_DIR": cold})
        if proc.returncode != 0:
            rows.append({"dataset": args.dataset, "model": model,
                         "batches": "error: " + " | ".join(proc.stderr.strip().splitlines()[-2:])})
        else:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    write_result(f"models_new_{args.dataset}_memory", COLUMNS, rows, threads=args.threads, notes=(
        "Seeded random features (4096-d image, 384-d text): memory/plumbing check only. One fresh process per "
        f"model: build (cold kNN cache), {args.batches or 'all'} training batch(es) of epoch 1 (each batch is the "
        "same full-graph forward/backward, so memory is at steady state), one valid and one test full-ranking "
        "pass; peak = ru_maxrss of that process. Timings taken on a shared, loaded 2-core machine."))


if __name__ == "__main__":
    main()
