"""How training and evaluation cost grows with data: LightGCN and FREEDOM on 0.2M, 1M and 5M interactions.

The interaction graphs are GENERATED, seeded, with the proportions of Amazon Baby
(160,792 interactions, 19,445 users, 7,050 items): users and items grow in proportion
with the interactions. Item popularity follows a power law (Zipf, exponent
``--zipf``), user activity a shifted Pareto law with at least 5 interactions per user
(Baby is a 5-core); every item gets at least one interaction; each interaction is
labelled train/valid/test with probability 0.8/0.1/0.1. FREEDOM gets seeded random
384-d image and text features (``features.random_*``) and builds its kNN item graphs
with the configured backend (``graph.knn_backend=auto``: exact torch search below
``graph.knn_approx_min_items`` items, faiss IVF from there; the figures say which).

Each (model, size) runs in a FRESH subprocess, like ``bench_models.py``: the model is
built by the runner's ``build_model`` (packaged defaults), evaluated once with the
:class:`Evaluator` (valid split, full ranking, ``eval.batch_size`` lowered so a score
block stays near 256 MiB) and trained for one epoch with the trainer's ``train_epoch``.
The evaluation pass runs BEFORE the epoch (its cost does not depend on the weights), so
a run whose epoch is too slow still reports it. The evaluation pass and the epoch may
each run ``--phase-limit`` seconds; a phase still running then is stopped and its time
projected from the work done (users scored, batches trained: both phases do equal work
per chunk), and the row says where it stopped. Peak memory is the subprocess's
``ru_maxrss``.

    python benchmarks/bench_scale.py --sizes 200000,1000000,5000000 --threads 1
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
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402

BABY = (160_792, 19_445, 7_050)  # interactions, users, items
FEATURE_DIM = 384


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def generate(n_inter: int, seed: int = 0, zipf: float = 0.9):
    """Seeded Baby-proportioned interactions: (users, items, labels, n_users, n_items)."""
    rng = np.random.default_rng(seed)
    n_users = max(2, round(n_inter * BABY[1] / BABY[0]))
    n_items = max(2, round(n_inter * BABY[2] / BABY[0]))
    pop = 1.0 / np.arange(1, n_items + 1) ** zipf
    pop = pop[rng.permutation(n_items)]
    pop /= pop.sum()
    extra = rng.pareto(1.5, n_users)
    deg = 5 + extra / extra.sum() * max(0, n_inter - n_items - 5 * n_users)
    deg = np.floor(deg).astype(np.int64)
    users = np.repeat(np.arange(n_users, dtype=np.int64), deg)
    items = rng.choice(n_items, size=users.size, p=pop)
    # every item once (to a random user), then duplicates dropped
    users = np.concatenate([rng.integers(0, n_users, n_items), users])
    items = np.concatenate([np.arange(n_items, dtype=np.int64), items])
    key = np.unique(users * n_items + items)
    for _ in range(5):  # top up what the duplicates took, with more popularity-drawn items of random users
        short = n_inter - key.size
        if short <= 0:
            break
        more = rng.integers(0, n_users, short) * n_items + rng.choice(n_items, size=short, p=pop)
        key = np.unique(np.concatenate([key, more]))
    if key.size > n_inter:  # trim at random, keeping every item's first interaction
        first = np.unique(np.arange(n_items) + n_items * users[:n_items])
        rest = np.setdiff1d(key, first, assume_unique=True)
        key = np.sort(np.concatenate([first, rng.choice(rest, n_inter - first.size, replace=False)]))
    users, items = key // n_items, key % n_items
    labels = rng.choice(3, size=users.size, p=[0.8, 0.1, 0.1])
    return users, items, labels, n_users, n_items


def build_data(n_inter: int, seed: int):
    from cliper.data.interactions import InteractionData, Split

    users, items, labels, n_users, n_items = generate(n_inter, seed)
    has_train = np.zeros(n_users, dtype=bool)
    has_train[users[labels == 0]] = True
    keep = (labels == 0) | has_train[users]  # the loader's protocol: eval rows of users without train rows go
    splits = {s: Split(users[keep & (labels == i)], items[keep & (labels == i)])
              for i, s in enumerate(("train", "valid", "test"))}
    return InteractionData(n_users=n_users, n_items=n_items, name=f"generated-{n_inter}", **splits)


class _Stop(Exception):
    """A phase ran past ``--phase-limit``: its time is projected from the work done."""


def worker(args) -> None:
    """Inside the subprocess: one model at one size; progress lines go to ``args.progress``."""
    progress = open(args.progress, "a", encoding="utf-8")
    t_start = time.perf_counter()

    def note(**kw):
        progress.write(json.dumps({"t": round(time.perf_counter() - t_start, 1), "rss": round(_rss_gib(), 3), **kw})
                       + "\n")
        progress.flush()

    import torch

    torch.set_num_threads(args.threads)
    from cliper.config.loader import load_config
    from cliper.training.runner import build_features, build_model, make_evaluator
    from cliper.training.trainer import Trainer

    t = time.perf_counter()
    data = build_data(args.size, args.seed)
    gen_s = time.perf_counter() - t
    eval_bs = int(max(64, min(4096, (1 << 26) // data.n_items)))
    overrides = [f"model.name={args.model}", "train.epochs=1", "train.checkpoint=false",
                 f"eval.batch_size={eval_bs}", *args.override]
    if args.model != "lightgcn":
        overrides += [f"features.random_image_dim={FEATURE_DIM}", f"features.random_text_dim={FEATURE_DIM}"]
    cfg = load_config(overrides=overrides)
    features = build_features(cfg, data.n_items)
    row = {"model": args.model, "interactions": len(data.train) + len(data.valid) + len(data.test),
           "train": len(data.train), "users": data.n_users, "items": data.n_items, "threads": args.threads,
           "gen_s": round(gen_s, 1), "eval_batch_users": eval_bs}
    note(phase="build", **row)
    device = torch.device("cpu")
    t, c = time.perf_counter(), time.process_time()
    model = build_model(cfg, data, features, device)
    row["build_s"] = round(time.perf_counter() - t, 1)
    row["build_cpu_s"] = round(time.process_time() - c, 1)
    info = getattr(getattr(model, "knn_cache", None), "last_info", None)
    if info:
        row["knn_backend"], row["knn_recall"] = info["backend"], info.get("recall")
    evaluator = make_evaluator(cfg, data, device)
    trainer = Trainer(model, data, evaluator, cfg.train, cfg.eval.valid_metric, cfg.seed, None,
                      progress=False, device=device)
    note(phase="eval", **row)
    limit = args.phase_limit

    # -- one evaluation pass (users counted through the model's scoring calls) --
    n_eval = int(data.eval_users("valid").size)
    scored = [0]
    t_eval, c_eval = time.perf_counter(), time.process_time()
    predict = model.full_sort_predict

    def counted_predict(users):
        if scored[0] and time.perf_counter() - t_eval > limit:
            raise _Stop
        scored[0] += int(users.numel())
        return predict(users)

    model.full_sort_predict = counted_predict
    try:
        evaluator.evaluate(model, "valid")
        row["eval_s"] = round(time.perf_counter() - t_eval, 1)
        row["eval_cpu_s"] = round(time.process_time() - c_eval, 1)
    except _Stop:
        el, cpu = time.perf_counter() - t_eval, time.process_time() - c_eval
        row["eval_s_projected"] = round(el * n_eval / scored[0], 0)
        row["eval_cpu_s_projected"] = round(cpu * n_eval / scored[0], 0)
        row["stopped"] = f"eval stopped at the {limit} s phase limit after {scored[0]}/{n_eval} users"
    model.full_sort_predict = predict
    note(phase="epoch", **row)

    # -- one training epoch (batches counted through calculate_loss; the trainer's loop is untouched) --
    n_batches = (len(data.train) + cfg.train.batch_size - 1) // cfg.train.batch_size
    row["batches"] = n_batches
    done = [0]
    t_epoch, c_epoch = time.perf_counter(), time.process_time()
    loss_fn = model.calculate_loss

    def counted_loss(batch):
        if done[0] and time.perf_counter() - t_epoch > limit:
            raise _Stop
        done[0] += 1
        return loss_fn(batch)

    model.calculate_loss = counted_loss
    try:
        trainer.train_epoch(1)
        row["epoch_s"] = round(time.perf_counter() - t_epoch, 1)
        row["epoch_cpu_s"] = round(time.process_time() - c_epoch, 1)
    except _Stop:
        el, cpu = time.perf_counter() - t_epoch, time.process_time() - c_epoch
        row["epoch_s_projected"] = round(el * n_batches / done[0], 0)
        row["epoch_cpu_s_projected"] = round(cpu * n_batches / done[0], 0)
        msg = f"epoch stopped at the {limit} s phase limit after {done[0]}/{n_batches} batches"
        row["stopped"] = f"{row['stopped']}; {msg}" if "stopped" in row else msg
    row["peak_rss_gib"] = round(_rss_gib(), 2)
    note(phase="done", **row)
    print(json.dumps(row))


def run_one(args, model: str, size: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="cliper-scale-") as tmp:
        prog = Path(tmp) / "progress.jsonl"
        cmd = [sys.executable, __file__, "--worker", "--model", model, "--size", str(size), "--threads",
               str(args.threads), "--seed", str(args.seed), "--progress", str(prog), "--phase-limit",
               str(args.phase_limit)]
        for o in args.override:
            cmd += ["-o", o]
        env = dict(os.environ, CLIPER_CACHE_DIR=str(Path(tmp) / "cache"))  # a cold kNN cache: build_s includes it
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc, timed_out = None, True
        wall = time.perf_counter() - t
        lines = [json.loads(x) for x in prog.read_text().splitlines()] if prog.exists() else []
    if proc is not None and proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    last = lines[-1] if lines else {}
    row = {k: v for k, v in last.items() if k not in ("t", "rss", "phase")}
    row.update(model=model, peak_rss_gib=last.get("rss"))
    if timed_out:
        row["stopped"] = f"killed by the {args.timeout} s limit during {last.get('phase', 'start')}"
    else:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
        row["stopped"] = f"failed after {wall:.0f} s in {last.get('phase', 'start')}: " + " | ".join(tail)
    return row


COLUMNS = ["model", "interactions", "train", "users", "items", "threads", "build_s", "build_cpu_s", "knn_backend",
           "knn_recall", "eval_s", "eval_cpu_s", "eval_s_projected", "eval_cpu_s_projected", "epoch_s", "epoch_cpu_s",
           "epoch_s_projected", "epoch_cpu_s_projected", "batches", "peak_rss_gib", "stopped"]


def _v(r: dict, key: str, projected: str | None = None) -> str:
    if r.get(key) is not None:
        return str(r[key])
    if projected and r.get(projected) is not None:
        return f"~{r[projected]:.0f}*"
    return "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200000,1000000,5000000", help="interactions per generated graph")
    ap.add_argument("--models", default="lightgcn,freedom")
    ap.add_argument("--threads", type=int, default=1, help="torch (and faiss) threads")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per (model, size) before it is killed")
    ap.add_argument("--phase-limit", type=int, default=300,
                    help="seconds the eval pass and the epoch may each run; past it the rest is projected")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--override", action="append", default=[], help="extra config override")
    ap.add_argument("--name", default="scale", help="result name: benchmarks/results/<name>.json")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--progress", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for model in args.models.split(","):
            print(f"... {model} {size}", file=sys.stderr, flush=True)
            row = run_one(args, model, size)
            row["loadavg"] = [round(v, 2) for v in os.getloadavg()]
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not args.no_write:  # rewritten after every run, so a stopped benchmark keeps what it measured
                write_result(args.name, COLUMNS + ["loadavg"], rows, NOTES, threads=args.threads)
    head = f"{'model':9} {'inter':>8} {'users':>7} {'items':>7} {'build s':>8} {'kNN':>11} {'eval s':>7} " \
           f"{'s/epoch':>8} {'eval CPU s':>10} {'epoch CPU s':>11} {'peak GiB':>8}"
    print(f"threads {args.threads}; generated Baby-proportioned graphs; 384-d random features for FREEDOM")
    print(head)
    for r in rows:
        print(f"{r['model']:9} {_v(r, 'interactions'):>8} {_v(r, 'users'):>7} {_v(r, 'items'):>7} "
              f"{_v(r, 'build_s'):>8} {_v(r, 'knn_backend'):>11} {_v(r, 'eval_s', 'eval_s_projected'):>7} "
              f"{_v(r, 'epoch_s', 'epoch_s_projected'):>8} {_v(r, 'eval_cpu_s', 'eval_cpu_s_projected'):>10} "
              f"{_v(r, 'epoch_cpu_s', 'epoch_cpu_s_projected'):>11} {_v(r, 'peak_rss_gib'):>8}  {r.get('stopped', '')}  "
              f"load {r['loadavg']}")
    print("CPU s = process CPU time at 1 thread: the wall time an otherwise idle machine would take")
    print("~N* = projected from the part done within --phase-limit (the row says where it stopped)")

NOTES = ("Generated seeded interaction graphs with Amazon Baby's user/item/interaction proportions, Zipf item "
         "popularity, >= 5 interactions per user, 0.8/0.1/0.1 split; FREEDOM with seeded random 384-d image and text "
         "features (kNN item graphs by graph.knn_backend=auto). One fresh subprocess per (model, size): build_s = "
         "runner.build_model (incl. kNN graphs, cold cache), eval_s = one Evaluator pass over the valid users (before "
         "training; eval.batch_size lowered to keep score blocks ~256 MiB), epoch_s = one Trainer.train_epoch; "
         "*_cpu_s = process CPU seconds of the same phase (at 1 thread close to the wall time of an idle machine; "
         "the wall figures are inflated by the load average); peak_rss_gib = ru_maxrss of the subprocess. A row with 'stopped' had a phase stopped at --phase-limit: "
         "eval_s_projected / epoch_s_projected = elapsed phase time * all users (batches) / users scored "
         "(batches trained).")


if __name__ == "__main__":
    main()
