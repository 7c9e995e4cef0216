"""In-process A/B of this tree's SLMRec training step against another tree's ``slmrec.py``.

One model is built as ``cliper train`` builds it (``random_run``, ``apply_memory_settings``); each
round trains ``--batches`` batches with this tree's class, then the same batches (re-seeded) with
the other file's class swapped in (``model.__class__``: both read the same weights, graph and
feature tables; the other side's sparse products run MKL's CSR kernel, as before the bag kernel),
alternating which goes first. Medians of the per-batch process CPU seconds (the first batch of
each round left out). The weights keep training, so both sides see nearly the same parameters.

    python benchmarks/probe_slmrec_ab.py --against /work/main/src/cliper/models/slmrec.py
    python benchmarks/probe_slmrec_ab.py --against OTHER/slmrec.py -o train.precision=bf16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from random_run import DATASETS, add_run_args, other_tree_class, random_run, time_batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="baby", choices=sorted(DATASETS))
    ap.add_argument("--against", type=Path, required=True, help="the other tree's src/cliper/models/slmrec.py")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batches", type=int, default=8)
    add_run_args(ap, dims=False)
    args = ap.parse_args()
    from cliper.runtime import apply_memory_settings

    apply_memory_settings()  # cliper train's allocator defaults (before torch allocates anything)
    import torch

    torch.set_num_threads(args.threads)
    other = other_tree_class(args.against, "SLMRec", "slmrec_other")
    with random_run(args.dataset, "slmrec", overrides=args.override) as run:
        from cliper.training.seed import seed_epoch

        this = type(run.model)
        cpu: dict[str, list[float]] = {"this": [], "other": []}
        for r in range(args.rounds):
            for name in ("this", "other") if r % 2 == 0 else ("other", "this"):
                run.model.__class__ = this if name == "this" else other
                run.model._rows_buffers.clear()
                for graph in (run.model._r, run.model._rt):
                    graph.kernel = "bag" if name == "this" else "mkl"
                seed_epoch(run.cfg.seed, r + 1)
                seconds, _ = time_batches(run.trainer, run.model, r + 1, args.batches, clock=time.process_time)
                cpu[name] += seconds[1:]
        out = {f"{k}_median_batch_cpu_ms": round(1e3 * statistics.median(v), 1) for k, v in cpu.items()}
        out["other/this"] = round(out["other_median_batch_cpu_ms"] / out["this_median_batch_cpu_ms"], 3)
        print(json.dumps({"dataset": args.dataset, "threads": torch.get_num_threads(), "overrides": args.override,
                          **out, "loadavg": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
