"""Short speed/memory probe of one backbone: build, the first N training batches, one evaluation pass.

For machines too loaded (or models too slow) to run ``bench_models.py``'s full epoch: the
model is built exactly as there (packaged YAML defaults, the runner's ``build_model``, a cold
kNN cache), the first ``--batches`` batches of epoch 1 are trained with the trainer's own
batches and optimiser, and one full-ranking evaluation runs on the valid split. It prints
one JSON line: build seconds, mean seconds per batch, the EXTRAPOLATED seconds per epoch
(mean batch time x batches per epoch; say so when quoting it), eval seconds, and peak RSS
of the process (``VmHWM``: Python + torch + data + the seeded random features the model reads + model).

    python benchmarks/probe_batches.py --model mgcn --dataset sports --batches 3 --threads 1
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
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--image-dim", type=int, default=4096)
    ap.add_argument("--text-dim", type=int, default=384)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--override", action="append", default=[])
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from cliper.config.loader import load_config
    from cliper.paths import shared_dataset
    from cliper.runtime import peak_rss_mb
    from cliper.training.runner import build_features, build_model, load_dataset, make_evaluator, uses_features
    from cliper.training.trainer import Trainer

    path = shared_dataset({"baby": "amazon-baby", "sports": "amazon-sports"}[args.dataset])
    with tempfile.TemporaryDirectory(prefix="cliper-probe-cache-") as cold:
        os.environ["CLIPER_CACHE_DIR"] = cold
        cfg = load_config(overrides=[f"dataset.path={path}", f"model.name={args.model}", "train.checkpoint=false",
                                     f"features.random_image_dim={args.image_dim}",
                                     f"features.random_text_dim={args.text_dim}", *args.override])
        data = load_dataset(cfg)
        features = build_features(cfg, data.n_items) if uses_features(cfg) else None  # as cliper train does
        device = torch.device("cpu")
        t0 = time.perf_counter()
        model = build_model(cfg, data, features, device, own_features=True)
        del features
        build_s = time.perf_counter() - t0
        evaluator = make_evaluator(cfg, data, device)
        trainer = Trainer(model, data, evaluator, cfg.train, cfg.eval.valid_metric, cfg.seed, None,
                          progress=False, device=device)
        model.train()
        model.pre_epoch_hook(1)
        times, losses = [], []
        for i, batch in enumerate(trainer.batches(1)):
            if i == args.batches:
                break
            t = time.perf_counter()
            trainer.optimizer.zero_grad(set_to_none=True)
            loss = model.calculate_loss(batch)
            loss.backward()
            trainer.optimizer.step()
            times.append(time.perf_counter() - t)
            losses.append(float(loss.detach()))
        n_batches = (len(data.train) + cfg.train.batch_size - 1) // cfg.train.batch_size
        t = time.perf_counter()
        recall = evaluator.evaluate(model, "valid")["recall@20"]
        eval_s = time.perf_counter() - t
    print(json.dumps({
        "dataset": args.dataset, "model": args.model, "users": data.n_users, "items": data.n_items,
        "threads": torch.get_num_threads(), "build_s": round(build_s, 2), "batch_s": [round(x, 2) for x in times],
        "batches_per_epoch": n_batches, "epoch_s_extrapolated": round(sum(times) / len(times) * n_batches, 1),
        "eval_s": round(eval_s, 2), "peak_rss_gib": round(peak_rss_mb() / 1024, 3),
        "losses": [round(x, 4) for x in losses], "valid_recall@20": recall,
    }))


if __name__ == "__main__":
    main()
