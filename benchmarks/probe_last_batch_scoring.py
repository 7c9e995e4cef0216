"""How much MMRec's "score with the last training batch's representations" changes metrics.

MMRec's MMGCN, GRCN, DualGNN and SLMRec store the representations computed in the last
training step and rank with them; cliper recomputes them from the current weights. For the
same seeded training this probe evaluates both: (a) recomputed, (b) the representations of
the last ``calculate_loss`` call (one optimiser step old). Seeded random features (no content).

    python benchmarks/probe_last_batch_scoring.py --models mmgcn,grcn,dualgnn,slmrec --epochs 2
"""

from __future__ import annotations

import argparse
import time

import torch

from cliper.config.loader import load_config
from cliper.paths import shared_dataset
from cliper.training.runner import build_features, build_model, load_dataset, make_evaluator
from cliper.training.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mmgcn,grcn,dualgnn,slmrec")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--dataset", default="amazon-baby")
    args = ap.parse_args()
    torch.set_num_threads(1)
    path = shared_dataset(args.dataset)
    for name in args.models.split(","):
        cfg = load_config(overrides=[f"dataset.path={path}", f"model.name={name}", f"train.epochs={args.epochs}",
                                     "features.random_image_dim=256", "features.random_text_dim=128"])
        data = load_dataset(cfg)
        model = build_model(cfg, data, build_features(cfg, data.n_items), torch.device("cpu"))
        evaluator = make_evaluator(cfg, data, torch.device("cpu"))
        trainer = Trainer(model, data, evaluator, cfg.train, seed=cfg.seed, progress=False)
        method = "compute" if name == "slmrec" else "propagate"
        real = getattr(model, method)
        stash = {}

        def spy(*a, _real=real, **kw):
            out = _real(*a, **kw)
            if model.training:
                stash["reps"] = tuple(t.detach().clone() for t in out[:2])
            return out

        setattr(model, method, spy)
        t0 = time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            trainer.train_epoch(epoch)
        secs = time.perf_counter() - t0
        fresh = evaluator.evaluate(model, "test")
        with torch.no_grad():
            now = model.score_embeddings()
        drift = max(float((x - y).abs().max() / y.abs().max()) for x, y in zip(stash["reps"], now))
        model.cached = lambda compute: stash["reps"]  # MMRec: rank with the last batch's output
        stale = evaluator.evaluate(model, "test")
        rel = {k: (stale[k] - fresh[k]) / fresh[k] * 100 for k in ("recall@20", "ndcg@20")}
        print(f"{name}: {args.epochs} epochs ({secs:.0f}s train) | recomputed R@20 {fresh['recall@20']:.5f} "
              f"N@20 {fresh['ndcg@20']:.5f} | last-batch R@20 {stale['recall@20']:.5f} N@20 {stale['ndcg@20']:.5f}"
              f" | diff R {rel['recall@20']:+.3f}% N {rel['ndcg@20']:+.3f}% | max rel rep drift {drift:.2e}",
              flush=True)


if __name__ == "__main__":
    main()
