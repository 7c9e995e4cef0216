"""Seconds per training epoch, seconds per full evaluation pass and peak memory of every backbone.

Each (dataset, model) runs in a FRESH subprocess, so its peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own: Python + torch + the loaded
graph + seeded random features + the model, i.e. what ``cliper train`` would hold. The
model is built like ``cliper train`` builds it (packaged per-model YAML defaults, the
runner's ``build_model``), trained with the trainer's own ``train_epoch`` (shuffling,
negative sampling, Adam), and evaluated with the :class:`Evaluator` on the valid split.
Features are SEEDED RANDOM (4096-d image + 384-d text by default, the widths of MMRec's
features; ``--clip`` for 768/768), never real features: figures are for speed and
memory only. The kNN graph cache starts empty (``build_s`` includes building it) unless
``--cache-dir`` points at a warm one.

    python benchmarks/bench_models.py --models freedom,lattice --datasets baby,sports
    python benchmarks/bench_models.py --epochs 3 --json bench.json

The table is also written to ``benchmarks/results/<--name>.json`` (default ``models``)
through :func:`results_io.write_result`; ``python benchmarks/render.py`` renders it.

Reference toolbox (MMRec) figures on this kind of machine (2 cores, Baby, random
4096/384 features, default configs; from the project brief) are printed beside ours.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from results_io import write_result

# s/epoch, s/eval, peak GiB of MMRec (None: not measured)
REFERENCE = {
    ("baby", "vbpr"): (3.7, 2.0, 1.0),
    ("baby", "mmgcn"): (77.5, 1.9, 2.0),
    ("baby", "dualgnn"): (54.1, 1.9, 1.4),
    ("baby", "lattice"): (23.5, 26.7, 3.2),
    ("baby", "slmrec"): (21.3, 2.1, 1.5),
    ("baby", "bm3"): (16.8, 2.1, 1.3),
    ("baby", "freedom"): (16.8, 2.1, 1.3),
    ("sports", "freedom"): (79.3, 5.5, 2.7),
    ("baby", "lightgcn"): (2.5, None, None),
    ("sports", "lightgcn"): (10.7, None, None),
}
DATASETS = {"baby": "amazon-baby", "sports": "amazon-sports"}


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def worker(args) -> dict:
    """Runs inside the subprocess: one model on one dataset."""
    if args.mallopt:
        from cliper.runtime import keep_freed_memory

        keep_freed_memory()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from cliper.config.loader import load_config
    from cliper.paths import shared_dataset
    from cliper.training.runner import build_features, build_model, load_dataset, make_evaluator
    from cliper.training.trainer import Trainer

    path = shared_dataset(DATASETS[args.dataset])
    overrides = [f"dataset.path={path}", f"model.name={args.model}", f"train.epochs={args.epochs}",
                 "train.checkpoint=false", *args.override]
    if args.image_dim:
        overrides.append(f"features.random_image_dim={args.image_dim}")
    if args.text_dim:
        overrides.append(f"features.random_text_dim={args.text_dim}")
    cfg = load_config(overrides=overrides)
    data = load_dataset(cfg)
    features = build_features(cfg, data.n_items)
    device = torch.device("cpu")
    base_rss = _rss_gib()
    t0 = time.perf_counter()
    model = build_model(cfg, data, features, device)
    build_s = time.perf_counter() - t0
    evaluator = make_evaluator(cfg, data, device)
    trainer = Trainer(model, data, evaluator, cfg.train, cfg.eval.valid_metric, cfg.seed, None,
                      progress=False, device=device)
    epochs, losses = [], []
    for epoch in range(1, args.epochs + 1):
        t = time.perf_counter()
        losses.append(trainer.train_epoch(epoch))
        epochs.append(time.perf_counter() - t)
    evals, recall = [], None
    for _ in range(args.evals):
        t = time.perf_counter()
        recall = evaluator.evaluate(model, "valid")["recall@20"]
        evals.append(time.perf_counter() - t)
    return {
        "dataset": args.dataset, "model": args.model, "users": data.n_users, "items": data.n_items,
        "image_dim": args.image_dim, "text_dim": args.text_dim, "threads": torch.get_num_threads(),
        "build_s": build_s, "epoch_s": sum(epochs) / len(epochs), "epoch_s_all": epochs,
        "eval_s": sum(evals) / len(evals), "peak_rss_gib": _rss_gib(), "base_rss_gib": base_rss,
        "last_loss": losses[-1], "valid_recall@20": recall,
    }


def run_one(args, dataset: str, model: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--dataset", dataset, "--model", model, "--epochs", str(args.epochs),
           "--evals", str(args.evals), "--image-dim", str(args.image_dim), "--text-dim", str(args.text_dim)]
    for o in args.override:
        cmd += ["-o", o]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.mallopt:
        cmd.append("--mallopt")
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="cliper-bench-cache-") as cold:
        env["CLIPER_CACHE_DIR"] = args.cache_dir or cold
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"dataset": dataset, "model": model, "error": " | ".join(tail)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


COLUMNS = ["dataset", "model", "build s", "s/epoch", "s/eval", "peak GiB", "valid R@20",
           "reference s/epoch", "reference s/eval", "reference GiB", "x train", "x eval"]


def result_row(r: dict) -> dict:
    """One row of the JSON result (rounded figures; the reference columns come from REFERENCE)."""
    if "error" in r:
        return {"dataset": r["dataset"], "model": r["model"], "build s": "error: " + r["error"]}
    ref = REFERENCE.get((r["dataset"], r["model"]), (None, None, None))
    return {
        "dataset": r["dataset"], "model": r["model"], "build s": round(r["build_s"], 2),
        "s/epoch": round(r["epoch_s"], 2), "s/eval": round(r["eval_s"], 2), "peak GiB": round(r["peak_rss_gib"], 2),
        "valid R@20": round(r["valid_recall@20"], 4), "reference s/epoch": ref[0], "reference s/eval": ref[1],
        "reference GiB": ref[2], "x train": round(ref[0] / r["epoch_s"], 1) if ref[0] else None,
        "x eval": round(ref[1] / r["eval_s"], 1) if ref[1] else None,
    }


def _fmt(x, spec=".2f") -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[dict]) -> None:
    head = (f"{'dataset':8} {'model':9} {'build s':>8} {'s/epoch':>8} {'s/eval':>7} {'peak GiB':>8} "
            f"{'R@20':>7} | {'MMRec s/ep':>10} {'s/eval':>7} {'GiB':>5} | {'x train':>7} {'x eval':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['dataset']:8} {r['model']:9} error: {r['error']}")
            continue
        ref = REFERENCE.get((r["dataset"], r["model"]), (None, None, None))
        xt = ref[0] / r["epoch_s"] if ref[0] else None
        xe = ref[1] / r["eval_s"] if ref[1] else None
        print(f"{r['dataset']:8} {r['model']:9} {r['build_s']:8.2f} {r['epoch_s']:8.2f} {r['eval_s']:7.2f} "
              f"{r['peak_rss_gib']:8.2f} {r['valid_recall@20']:7.4f} | {_fmt(ref[0], '.1f'):>10} "
              f"{_fmt(ref[1], '.1f'):>7} {_fmt(ref[2], '.1f'):>5} | {_fmt(xt, '.1f'):>7} {_fmt(xe, '.1f'):>6}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="comma-separated model names (default: every registered model)")
    ap.add_argument("--datasets", default="baby,sports", help="baby, sports (skipped when the shared data is absent)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs measured (mean reported)")
    ap.add_argument("--evals", type=int, default=2, help="evaluation passes measured (mean reported)")
    ap.add_argument("--image-dim", type=int, default=4096)
    ap.add_argument("--text-dim", type=int, default=384)
    ap.add_argument("--clip", action="store_true", help="768-d image and text features (CLIP ViT-L/14 width)")
    ap.add_argument("-o", "--override", action="append", default=[], help="extra config override, e.g. model.dropout=0.9")
    ap.add_argument("--cache-dir", default=None, help="kNN graph cache to use (default: a fresh, empty one)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per model before giving up")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--mallopt", action="store_true",
                    help="glibc mallopt: keep large freed blocks (avoids page faults on big temporaries)")
    ap.add_argument("--json", default=None, help="also write the raw rows to this JSON file")
    ap.add_argument("--name", default="models",
                    help="result name: writes benchmarks/results/<name>.json (rendered by benchmarks/render.py)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dataset", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.clip:
        args.image_dim = args.text_dim = 768
    if args.worker:
        print(json.dumps(worker(args)))
        return

    from cliper.models import available_models
    from cliper.paths import shared_dataset

    models = args.models.split(",") if args.models else available_models()
    rows = []
    for ds in args.datasets.split(","):
        if ds not in DATASETS:
            sys.exit(f"unknown dataset {ds!r}; choose from {', '.join(DATASETS)}")
        if shared_dataset(DATASETS[ds]) is None:
            print(f"skipping {ds}: shared data {DATASETS[ds]} not found")
            continue
        for m in models:
            print(f"... {ds} {m}", file=sys.stderr, flush=True)
            rows.append(run_one(args, ds, m))
    print(f"seeded random features: image {args.image_dim}-d, text {args.text_dim}-d; peak = ru_maxrss of a fresh "
          f"process per model (includes Python, torch, data and features); {args.epochs} epochs, {args.evals} evals; "
          f"threads {args.threads or 'default'}; mallopt {'on' if args.mallopt else 'off'}")
    print_table(rows)
    if not rows:
        sys.exit("nothing measured: no result written (an existing result file is kept)")
    write_result(args.name, COLUMNS, [result_row(r) for r in rows], notes=(
        f"Seeded random features (image {args.image_dim}-d, text {args.text_dim}-d): speed and memory only, not "
        f"results of the method. s/epoch = mean of {args.epochs} epochs of the trainer's train_epoch; s/eval = mean "
        f"of {args.evals} full-ranking passes on the valid split; peak = ru_maxrss of a fresh process per model "
        f"(Python, torch, data, features, model); build s includes building kNN graphs from an empty cache. "
        f"valid R@20 after {args.epochs} epoch(s) is a plumbing check. mallopt {'on' if args.mallopt else 'off'}. "
        "Reference columns: MMRec figures from the project brief (2 threads, idle machine), not measured here; "
        "x train / x eval = reference time / our time."), threads=args.threads)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
