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

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default="baby", choices=["baby", "sports"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1, help="unprofiled epochs timed before the profiled one")
    ap.add_argument("--batches", type=int, default=0, help="profile only the first N batches (0: whole epoch)")
    ap.add_argument("--time-batches", type=int, default=0,
                    help="also time the first N batches of the next epoch unprofiled (median CPU s, extrapolated)")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("-o", "--override", action="append", default=[])
    args = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    from cliper.config.loader import load_config
    from cliper.paths import shared_dataset
    from cliper.training.runner import build_features, build_model, load_dataset, make_evaluator
    from cliper.training.trainer import Trainer

    path = shared_dataset({"baby": "amazon-baby", "sports": "amazon-sports"}[args.dataset])
    with tempfile.TemporaryDirectory(prefix="cliper-profile-cache-") as cold:
        os.environ.setdefault("CLIPER_CACHE_DIR", cold)
        cfg = load_config(overrides=[f"dataset.path={path}", f"model.name={args.model}", "train.checkpoint=false",
                                     "features.random_image_dim=4096", "features.random_text_dim=384",
                                     *args.override])
        data = load_dataset(cfg)
        features = build_features(cfg, data.n_items)
        device = torch.device("cpu")
        model = build_model(cfg, data, features, device)
        evaluator = make_evaluator(cfg, data, device)
        trainer = Trainer(model, data, evaluator, cfg.train, cfg.eval.valid_metric, cfg.seed, None,
                          progress=False, device=device)
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
            model.train()
            model.pre_epoch_hook(epoch)
            batch_cpu, batch_losses = [], []
            for i, batch in enumerate(trainer.batches(epoch)):
                if i == args.time_batches:
                    break
                c = time.process_time()
                trainer.optimizer.zero_grad(set_to_none=True)
                loss = model.calculate_loss(batch)
                loss.backward()
                trainer.optimizer.step()
                batch_cpu.append(time.process_time() - c)
                batch_losses.append(loss.item())
            n_batches = (len(data.train) + cfg.train.batch_size - 1) // cfg.train.batch_size
            med = sorted(batch_cpu[1:] or batch_cpu)[len(batch_cpu[1:] or batch_cpu) // 2]  # first batch warms up
            print(json.dumps({"median_batch_cpu_s": round(med, 4), "batches_per_epoch": n_batches,
                              "epoch_cpu_s_extrapolated": round(med * n_batches, 2), "batch_losses": batch_losses}),
                  flush=True)
        if args.no_profile:
            return
        epoch = args.epochs + 1
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            if args.batches:
                model.train()
                for i, batch in enumerate(trainer.batches(epoch)):
                    if i == args.batches:
                        break
                    trainer.optimizer.zero_grad(set_to_none=True)
                    loss = model.calculate_loss(batch)
                    loss.backward()
                    trainer.optimizer.step()
            else:
                trainer.train_epoch(epoch)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=48))


if __name__ == "__main__":
    main()
