"""One training epoch of a backbone under torch.profiler: s/epoch and the top operators.

The model is built as ``cliper train`` builds it (packaged YAML defaults, the runner's
``build_model``, seeded random 4096/384 features) and trained with the trainer's own
``train_epoch`` (shuffling, negatives, Adam). A first, unprofiled epoch gives the plain
s/epoch; a second runs under the profiler (which slows it) and prints the top entries by
self CPU time.
``epoch_cpu_s`` (process CPU time) is less swayed than wall time by other processes on a
busy machine; quote both. ``--epochs 0 --time-batches N --no-profile`` times only the first
N batches (for the slow models; the per-epoch figure is then an EXTRAPOLATION, say so).
Before/after comparisons: run the same command with ``PYTHONPATH`` pointing at each tree. ``--batches N`` profiles only the first N batches of the epoch.

    python benchmarks/profile_epoch.py --model lightgcn --threads 1 --top 10
    python benchmarks/profile_epoch.py --model slmrec --epochs 0 --time-batches 6 --batches 8
"""

from __future__ import annotations

import json
import time

from random_run import add_run_args, batches_per_epoch, random_run, run_parser, time_batches


def main() -> None:
    ap = run_parser(__doc__)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1, help="unprofiled epochs timed before the profiled one")
    ap.add_argument("--batches", type=int, default=0, help="profile only the first N batches (0: whole epoch)")
    ap.add_argument("--time-batches", type=int, default=0,
                    help="also time the first N batches of the next epoch unprofiled (median CPU s, extrapolated)")
    ap.add_argument("--no-profile", action="store_true")
    add_run_args(ap, dims=False)
    args = ap.parse_args()

    from cliper.runtime import apply_memory_settings

    apply_memory_settings()  # cliper train's allocator defaults (before torch allocates anything)
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    with random_run(args.dataset, args.model, overrides=args.override) as run:
        cfg, model, trainer = run.cfg, run.model, run.trainer
        times, cpu, losses = [], [], []
        for epoch in range(1, args.epochs + 1):
            t, c = time.perf_counter(), time.process_time()
            losses.append(trainer.train_epoch(epoch))
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        print(json.dumps({"model": args.model, "dataset": args.dataset, "threads": torch.get_num_threads(),
                          "batch_size": cfg.train.batch_size, "epoch_s": [round(x, 3) for x in times],
                          "epoch_cpu_s": [round(x, 3) for x in cpu], "fused_adam": trainer.optimizer.defaults.get("fused"),
                          "losses": losses}), flush=True)
        if args.time_batches:  # the first N batches of the next epoch, unprofiled: median CPU s per batch
            from cliper.training.seed import seed_epoch

            epoch = args.epochs + 1
            seed_epoch(cfg.seed, epoch)
            batch_cpu, batch_losses = time_batches(trainer, model, epoch, args.time_batches, clock=time.process_time)
            n_batches = batches_per_epoch(run)
            med = sorted(batch_cpu[1:] or batch_cpu)[len(batch_cpu[1:] or batch_cpu) // 2]  # first batch warms up
            print(json.dumps({"median_batch_cpu_s": round(med, 4), "batches_per_epoch": n_batches,
                              "epoch_cpu_s_extrapolated": round(med * n_batches, 2), "batch_losses": batch_losses}),
                  flush=True)
        if args.no_profile:
            return
        epoch = args.epochs + 1
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            if args.batches:
                time_batches(trainer, model, epoch, args.batches)
            else:
                trainer.train_epoch(epoch)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=48))


if __name__ == "__main__":
    main()
