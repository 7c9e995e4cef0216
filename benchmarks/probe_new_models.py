"""torch.profiler view of a few training batches of one backbone (MGCN / LGMRec / DRAGON / SMORE work).

Builds the model like ``probe_batches.py`` (packaged YAML defaults, seeded random 4096/384
features, cold kNN cache), trains ``--warmup`` batches unprofiled, then ``--batches`` under
``torch.profiler`` and prints the top operators by self CPU time and the mean seconds per batch.
Figures are plumbing/speed only (random features).

    python benchmarks/probe_new_models.py --model lgmrec --batches 3
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default="baby", choices=["baby", "sports"])
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shapes", action="store_true", help="group the table by input shapes")
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
    with tempfile.TemporaryDirectory(prefix="cliper-probe-cache-") as cold:
        os.environ.setdefault("CLIPER_CACHE_DIR", cold)
        cfg = load_config(overrides=[f"dataset.path={path}", f"model.name={args.model}", "train.checkpoint=false",
                                     "features.random_image_dim=4096", "features.random_text_dim=384",
                                     *args.override])
        data = load_dataset(cfg)
        features = build_features(cfg, data.n_items)
        model = build_model(cfg, data, features, torch.device("cpu"))
        trainer = Trainer(model, data, make_evaluator(cfg, data, torch.device("cpu")), cfg.train,
                          cfg.eval.valid_metric, cfg.seed, None, progress=False, device=torch.device("cpu"))
        model.train()
        model.pre_epoch_hook(1)

        def step(batch):
            trainer.optimizer.zero_grad(set_to_none=True)
            model.calculate_loss(batch).backward()
            trainer.optimizer.step()

        batches = trainer.batches(1)
        for _ in range(args.warmup):
            step(next(batches))
        t = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
            for _ in range(args.batches):
                step(next(batches))
        per_batch = (time.perf_counter() - t) / args.batches
    n_batches = (len(data.train) + cfg.train.batch_size - 1) // cfg.train.batch_size
    print(prof.key_averages(group_by_input_shape=args.shapes).table(sort_by="self_cpu_time_total", row_limit=args.top))
    print(f"{args.model} {args.dataset}: {per_batch:.3f} s/batch (profiled), x{n_batches} batches "
          f"= {per_batch * n_batches:.1f} s/epoch extrapolated, threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
