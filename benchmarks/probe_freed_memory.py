"""Page faults, s/epoch and peak RSS of one backbone under glibc's three freed-memory settings.

One fresh process per setting (the allocator is set before torch allocates anything), built as
``cliper train`` builds the model (seeded random 4096/384 features); one warm-up epoch, then two
timed epochs (wall, CPU, minor page faults), one valid pass, and the process's peak RSS.

    python benchmarks/probe_freed_memory.py --model lightgcn --modes glibc cap64 keep glibc cap64

Settings: ``glibc`` = its dynamic defaults (``runtime.freed_memory_cap_mib: null``), ``capN`` = the
cap of N MiB (``cliper train``'s default is 64), ``keep`` = ``runtime.keep_freed_memory: true``; a
``+thp`` suffix adds torch's transparent huge pages (``runtime.huge_pages: true``, ``cliper train``'s
default: ``cap64+thp``), without it they are off.

    python benchmarks/probe_freed_memory.py --model freedom --modes cap64 cap64+thp cap64 cap64+thp
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def child(mode: str, model: str, dataset: str) -> dict:
    from cliper.runtime import cap_freed_memory, huge_pages_active, keep_freed_memory, use_huge_pages

    glibc_mode, _, thp = mode.partition("+")
    if glibc_mode == "keep":
        keep_freed_memory(True)
    elif glibc_mode.startswith("cap"):
        cap_freed_memory(int(glibc_mode[3:]))
    use_huge_pages(thp == "thp")
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from random_run import random_run

    with random_run(dataset, model) as run:
        run.trainer.train_epoch(1)
        epochs = []
        for e in (2, 3):
            r0, c, t = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.perf_counter()
            run.trainer.train_epoch(e)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            epochs.append({"wall_s": round(time.perf_counter() - t, 2), "cpu_s": round(time.process_time() - c, 2),
                           "page_faults": r1.ru_minflt - r0.ru_minflt})
        t = time.perf_counter()
        run.evaluator.evaluate(run.model, "valid")
        return {"mode": mode, "huge_pages": huge_pages_active(), "model": model, "dataset": dataset, "threads": 1,
                "epochs": epochs,
                "valid_pass_s": round(time.perf_counter() - t, 2),
                "peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lightgcn")
    ap.add_argument("--dataset", default="baby")
    ap.add_argument("--modes", nargs="+", default=["glibc", "cap64", "keep"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.dataset)))
        return
    for mode in args.modes:
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--model", args.model, "--dataset", args.dataset],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
