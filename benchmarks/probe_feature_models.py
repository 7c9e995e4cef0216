"""Speed probe of the feature backbones (VBPR, MMGCN, GRCN, LATTICE, BM3): s/epoch, s/eval pass
against the bare ranking operations in the same process, and torch.profiler top entries.

The model is built as ``bench_models.py`` builds it (packaged YAML defaults, the runner's
``build_model``, seeded RANDOM 4096-d image + 384-d text features, a cold kNN cache) and
trained with the trainer's own ``train_epoch``. The "bare" pass is the same
:class:`Evaluator` run over fixed random [U, d] x [I, d] embeddings (chunked matmul,
train-item mask, top-K, metrics) at the model's own score width: what a pass costs with
no representation to compute. glibc keeps freed blocks, as ``cliper`` does.
Each eval figure is the mean of ``--evals`` passes, each after ``model.eval()`` (the
valid pass of an epoch); ``eval_test_s`` is a test pass right after it (the trainer's
order when validation improves). Prints one JSON line per model. Figures are for speed
only; report the machine load with them.

    python benchmarks/probe_feature_models.py --models vbpr,bm3 --epochs 1 --evals 3
    python benchmarks/probe_feature_models.py --models mmgcn --epochs 0 --profile-batches 3
    python benchmarks/probe_feature_models.py --models bm3 --items 800   # small-data fixed costs
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from random_run import add_run_args, build_run, run_parser, time_batches


class _Bare:
    """A scorer over fixed embeddings: the evaluator's work with no representation to compute."""

    def __init__(self, users, items):
        self.users, self.items = users, items

    def full_sort_predict(self, u):
        return self.users[u] @ self.items.T


def _top(prof, n: int) -> list[dict]:
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:n]
    return [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1e3, 1), "calls": e.count} for e in rows]


def _subsample(data, n_items: int):
    """The interactions of the first ``n_items`` items, users without a train pair dropped."""
    import numpy as np

    from cliper.data.interactions import InteractionData, Split

    splits = {}
    for name in ("train", "valid", "test"):
        s = data.split(name)
        keep = s.items < n_items
        splits[name] = (s.users[keep], s.items[keep])
    users = np.unique(splits["train"][0])
    remap = -np.ones(data.n_users, dtype=np.int64)
    remap[users] = np.arange(users.size)
    out = {}
    for name, (u, i) in splits.items():
        r = remap[u]
        out[name] = Split(r[r >= 0], i[r >= 0])
    return InteractionData(int(users.size), n_items, out["train"], out["valid"], out["test"], name="subsample")


def probe(args, model_name: str) -> dict:
    import torch

    run = build_run(args.dataset, model_name, image_dim=args.image_dim, text_dim=args.text_dim,
                    overrides=args.override, prepare=(lambda d: _subsample(d, args.items)) if args.items else None)
    data, model, evaluator, trainer, build_s = run.data, run.model, run.evaluator, run.trainer, run.build_seconds
    out = {"model": model_name, "dataset": args.dataset, "users": data.n_users, "items": data.n_items,
           "threads": torch.get_num_threads(), "build_s": round(build_s, 2),
           "load_start": round(os.getloadavg()[0], 2)}
    epochs, losses = [], []
    for epoch in range(1, args.epochs + 1):
        t = time.perf_counter()
        losses.append(trainer.train_epoch(epoch))
        epochs.append(time.perf_counter() - t)
    if epochs:
        out.update(epoch_s=round(sum(epochs) / len(epochs), 3), epoch_s_all=[round(e, 3) for e in epochs],
                   last_loss=losses[-1])
    model.eval()
    with torch.no_grad():
        dim = model.score_embeddings()[0].shape[1]  # the bare pass ranks at the model's own width
    g = torch.Generator().manual_seed(1)
    bare = _Bare(torch.randn(data.n_users, dim, generator=g), torch.randn(data.n_items, dim, generator=g))
    bare_s, model_s, test_s = [], [], []
    metric = None
    for _ in range(args.evals):  # interleaved, so load changes hit both alike
        t = time.perf_counter()
        evaluator.evaluate(bare, "valid")
        bare_s.append(time.perf_counter() - t)
        model.train()  # a fresh pass, as after a training epoch
        t = time.perf_counter()
        metric = evaluator.evaluate(model, "valid")["recall@20"]
        model_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        evaluator.evaluate(model, "test")
        test_s.append(time.perf_counter() - t)
    if args.evals:
        out.update(score_dim=dim, bare_eval_s=round(min(bare_s), 3), eval_s=round(min(model_s), 3), eval_test_s=round(min(test_s), 3),
                   eval_ratio=round(min(model_s) / min(bare_s), 3), valid_recall20=metric)
    if args.profile_batches:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            time_batches(trainer, model, args.epochs + 1, args.profile_batches)
        out["profile_train"] = _top(prof, args.top)
        model.train()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            evaluator.evaluate(model, "valid")
        out["profile_eval"] = _top(prof, args.top)
    out["load_end"] = round(os.getloadavg()[0], 2)
    return out


def main() -> None:
    ap = run_parser(__doc__, models="vbpr,mmgcn,grcn,lattice,bm3")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--evals", type=int, default=3)
    ap.add_argument("--profile-batches", type=int, default=0, help="profile this many training batches + one eval")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--items", type=int, default=0, help="keep only the first N items (small-data fixed costs)")
    add_run_args(ap)
    args = ap.parse_args()
    import torch

    from cliper.runtime import keep_freed_memory

    keep_freed_memory()  # as the CLI does
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="cliper-probe-cache-") as cold:
        os.environ["CLIPER_CACHE_DIR"] = cold
        for name in args.models.split(","):
            print(json.dumps(probe(args, name)), flush=True)


if __name__ == "__main__":
    main()
