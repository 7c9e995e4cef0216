"""Quality and speed of ``train.precision=bf16`` against fp32 at an equal epoch budget.

Each (model, seed, precision) is built like ``cliper train`` builds it (packaged YAML
defaults, the runner's ``build_model``), trained for ``--epochs`` epochs by the trainer's
``train_epoch`` and scored once on valid and test. Features are SEEDED RANDOM (4096-d
image + 384-d text, fixed ``features.random_seed``): the question is whether bf16
autocast changes what the same training reaches, not how good the method is. The seed
(model initialisation, shuffling, negatives) varies; "seed noise" is the spread of the
fp32 runs over the seeds, and a bf16 mean within it is "within seed noise".

    python benchmarks/bench_precision.py --models vbpr --epochs 3 --seeds 1,2,3
"""

from __future__ import annotations

import statistics
import sys
import time

from random_run import add_run_args, build_run, run_parser
from results_io import write_result

COLUMNS = ["model", "precision", "seed", "epochs", "s/epoch", "cpu s/epoch", "valid R@20", "test R@20", "test N@20",
           "within seed noise"]


def run(model: str, seed: int, precision: str, args) -> dict:
    run = build_run(args.dataset, model, image_dim=args.image_dim, text_dim=args.text_dim,
                    overrides=[f"seed={seed}", f"train.precision={precision}", f"train.epochs={args.epochs}"])
    net, ev, trainer = run.model, run.evaluator, run.trainer
    t, c = time.perf_counter(), time.process_time()
    for epoch in range(1, args.epochs + 1):
        trainer.train_epoch(epoch)
    per_epoch = (time.perf_counter() - t) / args.epochs
    cpu_per_epoch = (time.process_time() - c) / args.epochs  # the figure to compare on a shared machine
    valid, test = ev.evaluate(net, "valid"), ev.evaluate(net, "test")
    return {"model": model, "precision": precision, "seed": seed, "epochs": args.epochs, "s/epoch": round(per_epoch, 2),
            "cpu s/epoch": round(cpu_per_epoch, 2), "valid R@20": round(valid["recall@20"], 4), "test R@20": round(test["recall@20"], 4),
            "test N@20": round(test["ndcg@20"], 4)}


def summary(model: str, rows: list[dict]) -> list[dict]:
    """Mean per precision; bf16 is within seed noise when its mean test R@20 lies within the fp32
    runs' range widened by half their spread on each side (one fp32 seed: within 2% of it)."""
    out = []
    by = {p: [r for r in rows if r["model"] == model and r["precision"] == p] for p in ("fp32", "bf16")}
    ref = [r["test R@20"] for r in by["fp32"]]
    for p, rs in by.items():
        if not rs:
            continue
        mean = statistics.fmean(r["test R@20"] for r in rs)
        row = {"model": model, "precision": p, "seed": "mean", "epochs": rs[0]["epochs"],
               "s/epoch": round(statistics.fmean(r["s/epoch"] for r in rs), 2),
               "cpu s/epoch": round(statistics.fmean(r["cpu s/epoch"] for r in rs), 2),
               "valid R@20": round(statistics.fmean(r["valid R@20"] for r in rs), 4), "test R@20": round(mean, 4),
               "test N@20": round(statistics.fmean(r["test N@20"] for r in rs), 4)}
        if p == "bf16" and ref:
            spread = max(ref) - min(ref)
            lo, hi = (min(ref) - spread / 2, max(ref) + spread / 2) if spread else (ref[0] * 0.98, ref[0] * 1.02)
            row["within seed noise"] = lo <= mean <= hi
        out.append(row)
    return out


def main() -> None:
    ap = run_parser(__doc__, models="vbpr,mmgcn")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", default="1,2")
    add_run_args(ap, threads=None, threads_help="torch threads (default: the runner's rule)", override=False)
    ap.add_argument("--name", default="precision")
    args = ap.parse_args()
    from cliper.paths import shared_dataset
    from cliper.runtime import set_threads

    if shared_dataset("amazon-" + args.dataset) is None:
        sys.exit(f"shared data amazon-{args.dataset} not found")
    threads = set_threads(args.threads)
    rows = []
    for model in args.models.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for precision in ("fp32", "bf16"):
                print(f"... {model} seed {seed} {precision}", file=sys.stderr, flush=True)
                rows.append(run(model, seed, precision, args))
                print(rows[-1], flush=True)
    table = [*rows, *(s for m in args.models.split(",") for s in summary(m, rows))]
    for r in table:
        print(r)
    write_result(args.name, COLUMNS, table, threads=threads, notes=(
        f"Amazon {args.dataset.capitalize()} with SEEDED RANDOM features (image {args.image_dim}-d, text "
        f"{args.text_dim}-d, features.random_seed 0): a check that bf16 autocast reaches what fp32 reaches with the "
        f"same {args.epochs}-epoch budget, not a result of the method. Seeds vary initialisation, shuffling and "
        "negatives. 'within seed noise': the bf16 mean test R@20 lies inside the fp32 seeds' range widened by half "
        "its width on each side. Evaluation always scores in fp32; sparse propagation stays fp32 under autocast."))


if __name__ == "__main__":
    main()
