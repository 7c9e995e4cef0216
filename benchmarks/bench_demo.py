"""Time the default synthetic demo: catalogue generation and from-scratch CLIP training.

Prints wall times and the held-out retrieval reached, as a ratio to the chance level
measured in the same run. All figures are on SYNTHETIC data.

    python benchmarks/bench_demo.py [--items 800 --users 1200 --epochs 20 --out /tmp/cliper-bench-demo]

Writes benchmarks/results/demo.json (times) and demo_retrieval.json (held-out retrieval);
``python benchmarks/render.py`` renders them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from cliper.demo import generate_demo_catalog
from cliper.finetune import FinetuneConfig, finetune_clip
from results_io import write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=800)
    ap.add_argument("--users", type=int, default=1200)
    ap.add_argument("--epochs", type=int, default=FinetuneConfig().epochs)
    ap.add_argument("--out", default="/tmp/cliper-bench-demo")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)

    t0 = time.perf_counter()
    cat = generate_demo_catalog(out / "data", args.items, args.users, seed=0, progress=False)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = finetune_clip(cat.meta, cat.images, out / "clip", config=FinetuneConfig(epochs=args.epochs), progress=False)
    t_ft = time.perf_counter() - t0

    load = os.getloadavg()[0]
    b = res.best_metrics
    print(f"[SYNTHETIC demo] {args.items} items, {args.users} users; load average {load:.1f} on {os.cpu_count()} cores")
    print(f"generate_demo_catalog: {t_gen:.1f} s ({cat.stats['interactions']} interactions)")
    print(f"finetune_clip (scratch, {args.epochs} epochs, {res.n_train} train / {res.n_held_out} held-out items): "
          f"{t_ft:.1f} s, {t_ft / args.epochs:.2f} s/epoch")
    retrieval = []
    names = {"i2t": "image -> {view}", "t2i": "{view} -> image"}
    for view in FinetuneConfig().eval_views:
        for d in ("i2t", "t2i"):
            row = {"direction": names[d].format(view=view), "best epoch": res.best_epoch}
            for k in (1, 5):
                v, c = b[f"{view}_{d}_R@{k}"], b[f"{view}_chance_R@{k}"]
                print(f"  best epoch {res.best_epoch}: {view} {d} R@{k} = {v:.3f}  (chance {c:.3f}, {v / c:.1f}x)")
                row[f"R@{k}"] = round(v, 3)
                row[f"chance R@{k}"] = round(c, 3)
            row["R@5 / chance"] = round(row["R@5"] / row["chance R@5"], 1)
            retrieval.append(row)
    synthetic = "SYNTHETIC catalogue: these figures show the pipeline works end to end, not how CLIP does on real products."
    write_result("demo", ["step", "seconds", "detail"], [
        {"step": "generate_demo_catalog", "seconds": round(t_gen, 1),
         "detail": f"{args.items} items, {args.users} users, {cat.stats['interactions']:,} interactions"},
        {"step": "finetune_clip (from scratch)", "seconds": round(t_ft, 1),
         "detail": f"{args.epochs} epochs, {t_ft / args.epochs:.2f} s/epoch; {res.n_train} train / "
                   f"{res.n_held_out} held-out items"},
    ], notes=synthetic)
    write_result("demo_retrieval", ["direction", "best epoch", "R@1", "R@5", "chance R@1", "chance R@5",
                                    "R@5 / chance"], retrieval,
                 notes="Held-out items of the demo catalogue, at the epoch with the best held-out image-to-title R@5. " + synthetic)


if __name__ == "__main__":
    main()
