"""Cost of following a trainable fusion (``graph_refresh_every``) on Amazon Baby: refresh vs one epoch.

Real Baby interactions (7,050 items, 119,674 train pairs); the V view features are
GENERATED (seeded unit vectors, V x 7050 x d), since no item text or CLIP features exist
on these machines, and fused by ``features.fusion=mlp``. For each backbone the same
process times one training epoch without a refresh (epoch 1), the refresh alone
(fused forward + exact kNN search + graph build, median of ``--repeats``), and an
epoch that includes it (epoch 2), so the ratio refresh / epoch is measured under the
same load.

    python benchmarks/bench_fusion_refresh.py --threads 1 --models freedom lattice
    python benchmarks/bench_fusion_refresh.py --threads 1 --models mgcn smore dragon --name fusion_refresh_more
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("CLIPER_SHARED_DATA", "../shared/data"))
    ap.add_argument("--models", nargs="+", default=["freedom", "lattice"])
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--name", default="fusion_refresh")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from cliper.config.schema import TrainSection
    from cliper.data.interactions import load_inter
    from cliper.evaluation import Evaluator
    from cliper.features.item_features import ItemFeatures
    from cliper.fusion import build_fusion
    from cliper.models import ModelContext, get_model_class
    from cliper.models.fused_graphs import refresh_fused_graphs
    from cliper.training.trainer import Trainer

    data = load_inter(Path(args.data) / "amazon-baby" / "baby.inter")
    n = data.n_items
    rng = np.random.default_rng(0)
    views = rng.standard_normal((args.views, n, args.dim)).astype(np.float32)
    views /= np.linalg.norm(views, axis=2, keepdims=True)
    image = rng.standard_normal((n, args.dim)).astype(np.float32)
    sim = rng.uniform(-1, 1, (n, args.views)).astype(np.float32)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        feats = ItemFeatures(image=image, views=views, similarity=sim,
                             fusion=build_fusion("mlp", args.views, args.dim))
        feats.reset_parameters()
        cls = get_model_class(name)
        t0 = time.perf_counter()
        model = cls(ModelContext(train=data.train_view(), features=feats), cls.Params())
        build_s = time.perf_counter() - t0
        trainer = Trainer(model, data, Evaluator(data, (20,), ("recall",)),
                          TrainSection(batch_size=args.batch_size, learning_rate=1e-3), progress=False)
        t0 = time.perf_counter()
        trainer.train_epoch(1)  # epoch 1: no refresh (the construction-time graph)
        epoch_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        trainer.train_epoch(2)  # epoch 2: refreshed first (graph_refresh_every = 1)
        epoch_refresh_s = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            refresh_fused_graphs(model)
            times.append(time.perf_counter() - t0)
        refresh_s = statistics.median(times)
        rows.append({"model": name, "items": n, "views": args.views, "dim": args.dim, "build_s": round(build_s, 2),
                     "epoch_s": round(epoch_s, 2), "epoch_with_refresh_s": round(epoch_refresh_s, 2),
                     "refresh_s": round(refresh_s, 2), "refresh_per_epoch": round(refresh_s / epoch_s, 3),
                     "refreshes": model.fused_graphs.refreshes})
        print(rows[-1], flush=True)
    path = write_result(args.name, list(rows[0]), rows, threads=args.threads, out_dir=args.out_dir,
                        notes="Baby interactions; generated views fused by mlp; refresh = fused forward + exact kNN "
                              "(k=10) + graph; refresh_per_epoch = refresh_s / epoch_s in the same process")
    print(path)


if __name__ == "__main__":
    main()
