"""LightGCN's epoch with the batch-rows propagation (the default) against the full propagation, A/B in
one process.

The model is built as ``cliper train`` builds it (packaged defaults, the runtime's allocator settings)
and trained with the trainer's own ``train_epoch``; epochs alternate between the two paths (the full
path: every node propagated through all layers, then the batch's rows selected), so both see the same
machine load. Prints each epoch's wall and CPU seconds, the medians and their ratio, and the losses
(the two paths are the same arithmetic: equal values, gradients equal up to float rounding).

    python benchmarks/probe_rows_propagation.py --model lightgcn --pairs 3
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time

from random_run import add_run_args, random_run, run_parser


@contextlib.contextmanager
def full_propagation():
    """Route ``LightGCNPropagation.rows`` through the full propagation and a row selection."""
    from cliper.graphs import adjacency
    from cliper.models import layers

    def full(graph, x, n_layers, rows, mean=False):
        return adjacency.layer_sum(graph, x, n_layers, mean).index_select(0, rows), x.index_select(0, rows)

    old = layers.propagate_rows
    layers.propagate_rows = full
    try:
        yield
    finally:
        layers.propagate_rows = old


def main() -> None:
    ap = run_parser(__doc__)
    ap.add_argument("--pairs", type=int, default=3, help="(rows, full) epoch pairs after one warm-up epoch")
    add_run_args(ap, dims=False)
    args = ap.parse_args()

    from cliper.runtime import apply_memory_settings

    apply_memory_settings()  # cliper train's allocator defaults (before torch allocates anything)
    import torch

    torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {"rows": [], "full": []}
    cpu: dict[str, list[float]] = {"rows": [], "full": []}
    losses: dict[str, list[float]] = {"rows": [], "full": []}
    with random_run(args.dataset, args.model, overrides=args.override) as run:
        run.trainer.train_epoch(1)  # warm-up
        epoch = 1
        for i in range(2 * args.pairs):
            path = ("rows", "full")[i % 2]
            epoch += 1
            with full_propagation() if path == "full" else contextlib.nullcontext():
                t, c = time.perf_counter(), time.process_time()
                losses[path].append(run.trainer.train_epoch(epoch))
                times[path].append(time.perf_counter() - t)
                cpu[path].append(time.process_time() - c)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(json.dumps({"model": args.model, "dataset": args.dataset, "threads": torch.get_num_threads(),
                      "epoch_s": times, "epoch_cpu_s": cpu, "median_s": med, "median_cpu_s": med_cpu,
                      "full_over_rows": round(med["full"] / med["rows"], 3),
                      "full_over_rows_cpu": round(med_cpu["full"] / med_cpu["rows"], 3), "losses": losses}))


if __name__ == "__main__":
    main()
