"""Seeded short runs of one backbone under two configs: valid Recall@20 per epoch, same budget.

For the fidelity questions of issue 12 (does a default reproduce the reference's early
learning?). Random features (4096-d image, 384-d text): says nothing about CLIPER.

    python benchmarks/probe_fidelity.py --model freedom --epochs 15 \
        --a model.train_features=false --b model.train_features=true
"""

from __future__ import annotations

import argparse
import json
import time

from cliper.config.loader import load_config
from cliper.runtime import set_threads
from cliper.training.runner import build_features, build_model, load_dataset, make_evaluator, resolve_device
from cliper.training.trainer import Trainer


RANDOM = ["features.random_image_dim=4096", "features.random_text_dim=384"]


def curve(model_name: str, dataset: str, epochs: int, seed: int, extra: list[str], base: list[str]) -> dict:
    overrides = [f"dataset.path={dataset}", f"model.name={model_name}", f"train.epochs={epochs}",
                 "train.patience=1000", f"seed={seed}", "eval.topk=[20]", "eval.metrics=[recall]", *base, *extra]
    cfg = load_config(overrides=overrides)
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    data = load_dataset(cfg)
    model = build_model(cfg, data, build_features(cfg, data.n_items), device)
    trainer = Trainer(model, data, make_evaluator(cfg, data, device), cfg.train, cfg.eval.valid_metric, cfg.seed,
                      None, progress=False, device=device)
    t0 = time.perf_counter()
    res = trainer.fit()
    return {"config": extra, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
            "recall@20": [round(r["valid"]["recall@20"], 5) for r in res.history]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="freedom")
    ap.add_argument("--dataset", default="../shared/data/amazon-baby")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seeds", type=int, nargs="+", default=[2024])
    ap.add_argument("--a", nargs="*", default=[])
    ap.add_argument("--b", nargs="*", default=[])
    ap.add_argument("--base", nargs="*", default=RANDOM, help="overrides shared by both (default: random features)")
    args = ap.parse_args()
    for seed in args.seeds:
        for extra in (args.a, args.b):
            print(json.dumps(curve(args.model, args.dataset, args.epochs, seed, extra, args.base)), flush=True)


if __name__ == "__main__":
    main()
