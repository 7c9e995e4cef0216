"""Seconds per training epoch, seconds per evaluation pass (and its ratio to the bare ranking
operations), peak memory and thread count of every backbone.

Each (dataset, model) runs in a FRESH subprocess, so its peak resident set size
(``VmHWM`` of /proc/self/status, :func:`cliper.runtime.peak_rss_mb`) is its own: Python +
torch + the graph + the features the model reads + the model + its training and
evaluation temporaries, i.e. what ``cliper train`` holds for one epoch with a valid and a
test pass. The worker builds the model as ``cliper train`` does: packaged per-model YAML
defaults, features loaded only when the model reads them (``modalities != ()``) and handed
to it without a copy, the runner's ``build_model``, threads from the runner's rule
(``--threads``, else ``$CLIPER_THREADS``, else :func:`cliper.runtime.default_threads`),
glibc's allocator as ``cliper train`` sets it (``runtime.freed_memory_cap_mib``, 64 MiB; ``--freed-cap-mib 0``
... ``none`` for glibc's dynamic defaults), or ``--keep-freed-memory``, and torch's transparent huge pages
as ``cliper train`` sets them (``runtime.huge_pages``; ``--no-huge-pages`` turns them off). It trains with the trainer's own
``train_epoch`` and evaluates with the :class:`Evaluator` (valid passes, then one test pass).

``bare s`` is, in the same process and on the same user chunks as the valid pass, only the
operations any full-ranking evaluator must do: the chunked [users x 64] @ [64 x items]
matmul of random embeddings, the train-item mask and top-50. ``x bare`` = s/eval / bare s:
what the model's own representation compute, the metrics and the bookkeeping add (the
target is <= 1.1; ``x bare cpu`` is the same ratio of process CPU seconds, less swayed by other
processes on a shared machine; ``cpu s/epoch`` likewise for an epoch, and ``train x MMRec`` /
``train x MMRec cpu`` divide MMRec's s/epoch by cliper's wall / CPU s/epoch). Every measured valid pass starts cold (``model.train()`` first), as after a
training epoch.

The pass is also split in two, in process CPU seconds: ``repr cpu s``, the model's
``score_embeddings()`` from a cold cache in eval mode without gradients (what the pass computes
once through ``self.cached``), and ``rank cpu s``, the same pass with that cache warm (chunked
products, mask, top-K, metrics). The score width differs by model (VBPR and DRAGON score 128-d
vectors, GRCN 192-d), so the 64-d bare ops are not the floor of their ranking: ``bare cpu s own
dim`` is the same bare ops at the model's own width, ``x bare cpu own dim`` = eval cpu s / that and
``rank / bare cpu own dim`` = rank cpu s / that (what the evaluator adds over the bare ops at the
model's width). The bare ops stay the plain per-chunk ``@`` of the issue; the evaluator writes its
score chunks into one buffer per pass in cache-sized tiles (:class:`cliper.evaluation.Evaluator`),
so the ranking is BELOW the bare ops (``benchmarks/probe_eval.py`` times the bare ops run that way
too, ``bare64_tiled``). A pass may also have to run searches of its own: LATTICE rebuilds its learned
item graph at every pass (as MMRec does), an exact kNN over all items per modality whose arithmetic on
Sports is as large as the ranking's. ``bare search cpu s`` times those searches done plainly (chunked
cosine products and ``topk``), and ``x own bare cpu`` = eval cpu s / (bare cpu s own dim + bare search
cpu s): the pass against the bare operations of its own arithmetic (for every other model the same as
``x bare cpu own dim``).

Features are SEEDED RANDOM (4096-d image + 384-d text by default, the widths of MMRec's
features; ``--clip`` for 768/768), never real features: figures are for speed and memory
only. ``clothing`` is a SYNTHETIC graph of Amazon Clothing's size (39,387 users, 23,033
items, 278,677 interactions, skewed degrees; the real Clothing is not on these machines),
for memory. The kNN graph cache starts empty (``build s`` includes building it) unless
``--cache-dir`` points at a warm one.

    python benchmarks/bench_models.py --models freedom,lattice --datasets baby,sports
    python benchmarks/bench_models.py --models lightgcn --datasets clothing --epochs 1 --evals 1

After each model, the same-run reference (``--ref-epochs``, default 1; 0: none) trains the independent
implementation of the same backbone (``benchmarks/independent/<model>.py``: MMRec's computation, e.g.
VBPR projecting every item at every batch, written without cliper's code) for that many epochs in a
fresh process, through the side-by-side harness's MMRec-semantics loop, at the same threads on the
same graph and feature widths (MMRec's trained feature tables where cliper's default freezes them:
``REF_PARAMS``): ``train x ref`` and ``peak / ref`` are against it. It is MMRec's arithmetic, not
MMRec's code: where the independent code is leaner than MMRec's (its own sparse products, no data
loader or trainer framework), ``x ref`` is below what the same run would show against MMRec itself. The issue's MMRec
figures stay in their own columns; they were measured on one processor, and machines of this
workplace are not all the same one (the ``machine`` record names it).

Last, the floor (``--floor-steps``, default 4; 0: none): the dense products of a training epoch are
counted and timed (:mod:`dense_products`: ``2 m k n`` of every ``mm``, ``addmm``, ``bmm`` and oneDNN
linear, forward and backward, over a further epoch's hook and first step and the mean of its next
steps) and divided by the processor's best fp32 product rate (a 2048^3 product, same process):
``floor s/epoch`` is the time no fp32 implementation of the same computation goes below here, and
``ref / floor`` the highest ``train x ref`` it allows. The pass gets the same treatment: ``repr GFLOP`` is the
dense arithmetic of one cold ``score_embeddings()``, ``repr floor s`` that at the peak rate, and
``x bare + repr floor cpu`` = eval cpu s / (bare cpu s own dim + repr floor s): the pass against the
bare ranking plus the least time its representation can take (MMGCN projects every item's 4096-d
image and runs its layers at every pass: 28.6 GFLOP on Baby, 0.42 s at 68 GFLOP/s against a 1.76 s
bare ranking). Where ``ref / floor`` is under 3, no fp32 implementation of the same computation
reaches 3x on that processor; where it is just above 3, the products must run near the peak and
everything around them must cost almost nothing.

The table is written to ``benchmarks/results/<--name>.json`` (default ``models``) through
:func:`results_io.write_result`; ``python benchmarks/render.py`` renders it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_result

# MMRec on Baby at 1 thread, 4096-d image + 384-d random text features, measured side by side with
# cliper on the same machine: the table of issue 13 (s/epoch, s/eval pass, peak RSS GiB).
REFERENCE = {
    ("baby", "lightgcn"): (4.07, 3.32, 0.83),
    ("baby", "vbpr"): (8.89, 3.97, 0.97),
    ("baby", "freedom"): (25.3, 3.38, 1.29),
    ("baby", "lattice"): (87.9, 115.5, 3.18),
    ("baby", "slmrec"): (28.1, 3.36, 1.51),
    ("baby", "dualgnn"): (85.4, 3.06, 1.33),
    ("baby", "mmgcn"): (156.5, 3.08, 1.93),
    ("clothing", "lightgcn"): (None, None, 1.56),  # issue 13: on the real Clothing graph
}
REFERENCE_SOURCE = ("MMRec figures: issue 13's side-by-side table (MMRec at 1 thread on Baby, 4096-d image and "
                    "384-d random text features); the Clothing LightGCN peak (1.56 GiB) is MMRec's on the REAL "
                    "Clothing graph, ours is on the synthetic one of the same size. Not re-measured here, and measured "
                    "on the machine the issue was filed on (its processor is not recorded; this project's records "
                    "before 2026-12-02 ran on AVX-512 EPYCs): on another processor (see the machine line) compare "
                    "with the same-run reference columns instead. ref = benchmarks/independent/<model>.py, MMRec's "
                    "computation written independently (not MMRec itself: no data loader or trainer of its own), "
                    "run by the side-by-side harness's MMRec-semantics loop in a fresh process after the model's "
                    "own, same graph, feature widths and threads, glibc's allocator defaults, with MMRec's trained "
                    "feature tables where cliper's default freezes them (FREEDOM, BM3, MGCN, SMORE: "
                    "train_features=1); ref s/epoch = mean "
                    "of its epochs, train x ref = ref s/epoch / s/epoch, ref GiB = its VmHWM after the epochs "
                    "and one valid pass (NumPy ranking), peak / ref = peak GiB / ref GiB.")
FLOOR_SOURCE = ("Floor columns (benchmarks/dense_products.py, after every other measurement): dense GFLOP/epoch = "
                "2mkn of every dense product (mm, addmm, bmm, baddbmm, oneDNN linear; forward and backward; sparse "
                "products not counted) in the pre-epoch hook and first step of a further epoch plus the mean of its "
                "next --floor-steps - 1 steps times the remaining steps of an epoch; products s/epoch = those products' "
                "own time, the same way; products GFLOP/s = their rate; peak GFLOP/s = the best of a 2048^3 fp32 "
                "product by MKL and by oneDNN, measured before and after (the higher one); floor s/epoch = dense "
                "GFLOP/epoch / peak GFLOP/s, the time no implementation of the same computation in fp32 goes below "
                "here; ref / floor = ref s/epoch / floor s/epoch, the highest train x ref that computation allows on "
                "this processor. repr GFLOP = the dense products of one cold score_embeddings() (eval mode, no gradients), "
                "repr floor s = that at peak GFLOP/s, x bare + repr floor cpu = eval cpu s / (bare cpu s own dim + repr "
                "floor s): the pass against the bare ranking plus the least time its representation can take.")
DATASETS = {"baby": "amazon-baby", "sports": "amazon-sports"}
CLOTHING = {"users": 39387, "items": 23033, "interactions": 278677}
BARE_DIM, BARE_K = 64, 50


def clothing_synthetic(path: Path, n_users: int = CLOTHING["users"], n_items: int = CLOTHING["items"],
                       n_inter: int = CLOTHING["interactions"], seed: int = 0) -> Path:
    """A seeded graph of Amazon Clothing's size: Pareto user degrees (>= 3 each) and item popularity,
    every item used, per-user random 80/10/10 split with at least one valid and one test pair."""
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.pareto(2.0, n_users) + 1.0
    deg = 3 + np.floor((n_inter - 3 * n_users) * w / w.sum()).astype(np.int64)
    deg[: n_inter - int(deg.sum())] += 1
    pop = rng.pareto(1.5, n_items) + 1.0
    pop /= pop.sum()
    users = np.repeat(np.arange(n_users), deg)
    items = rng.choice(n_items, size=users.size, p=pop)
    items[rng.choice(users.size, n_items, replace=False)] = rng.permutation(n_items)
    for _ in range(50):  # redraw repeated (user, item) pairs
        _, first = np.unique(users * n_items + items, return_index=True)
        dup = np.ones(users.size, bool)
        dup[first] = False
        if not dup.any():
            break
        items[dup] = rng.choice(n_items, size=int(dup.sum()), p=pop)
    keep = np.sort(np.unique(users * n_items + items, return_index=True)[1])
    users, items = users[keep], items[keep]
    order = np.lexsort((rng.random(users.size), users))
    users, items = users[order], items[order]
    counts = np.bincount(users, minlength=n_users)
    rank = np.arange(users.size) - np.r_[0, np.cumsum(counts)[:-1]][users]
    n_eval = np.maximum(1, np.round(0.1 * counts[users])).astype(np.int64)
    label = np.where(rank < n_eval, 1, np.where(rank < 2 * n_eval, 2, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("userID\titemID\tx_label\n")
        np.savetxt(fh, np.c_[users, items, label], fmt="%d", delimiter="\t")
    return path


def dataset_path(name: str, scratch: Path) -> Path | None:
    if name == "clothing":
        target = scratch / "clothing-synthetic" / "clothing.inter"
        return target.parent if target.is_file() else clothing_synthetic(target).parent
    from cliper.paths import shared_dataset

    return shared_dataset(DATASETS[name])


def bare_eval_ops(evaluator, n_users: int, n_items: int, dim: int = BARE_DIM) -> float:
    """Seconds of the minimum ranking work on the valid split's chunks: matmul, train mask, top-50."""
    import torch

    g = torch.Generator().manual_seed(0)
    users_emb, items_emb = torch.randn(n_users, dim, generator=g), torch.randn(n_items, dim, generator=g)
    t = time.perf_counter()
    with torch.no_grad():
        for users, (rows, cols), _ in evaluator._chunks("valid"):
            scores = users_emb[torch.from_numpy(users)] @ items_emb.T
            scores[rows, cols] = -torch.inf
            torch.topk(scores, min(BARE_K, n_items), dim=1)
    return time.perf_counter() - t


def pass_searches(model) -> list[tuple[int, int, int]]:
    """(items, width, k) of each exact kNN search a valid pass of ``model`` runs on its own: LATTICE
    rebuilds its learned item graph from the projected features at every pass (as MMRec's
    ``full_sort_predict(build_item_graph=True)``), one search per modality. Other models: none."""
    if getattr(model, "name", None) != "lattice":
        return []
    return [(model.n_items, model.params.feat_embed_dim, model.params.knn_k)] * len(model.modal)


def bare_search_ops(searches: list[tuple[int, int, int]], chunk: int = 4096) -> float:
    """Seconds of the plain exact search of each (items, width, k): chunked cosine products of random
    unit rows against all rows and ``topk``, the search's minimum work."""
    import torch

    g = torch.Generator().manual_seed(1)
    t = time.perf_counter()
    with torch.no_grad():
        for n, d, k in searches:
            x = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
            for s in range(0, n, chunk):
                torch.topk(x[s : s + chunk] @ x.T, min(k, n), dim=1)
    return time.perf_counter() - t


def _cpu_seconds(fn, *args) -> float:
    t = time.process_time()
    fn(*args)
    return time.process_time() - t


def split_pass(model, evaluator, n: int) -> tuple[list[float], list[float], int]:
    """``n`` x (representation, ranking) process CPU seconds of a valid pass, and the score width.

    Representation: ``score_embeddings()`` from a cold cache in eval mode without gradients, as the
    evaluator's pass computes it once (``self.cached``). Ranking: the same pass with that cache warm
    (chunked products, train mask, top-K, metrics): what is left of the pass.
    """
    import torch

    reps, ranks, width = [], [], BARE_DIM
    for _ in range(n):
        model.train()
        model.eval()  # clears the cache
        t = time.process_time()
        with torch.no_grad():
            users, items = model.score_embeddings()
        reps.append(time.process_time() - t)
        width = int(items.shape[1])
        del users, items
        t = time.process_time()
        evaluator.evaluate(model, "valid")  # in eval mode already: the cached representation is reused
        ranks.append(time.process_time() - t)
    return reps, ranks, width


def worker(args) -> dict:
    """Runs inside the subprocess: one model on one dataset."""
    from cliper.runtime import apply_memory_settings, huge_pages_active, peak_rss_mb, set_threads

    apply_memory_settings(args.keep_freed_memory, _cap(args.freed_cap_mib), not args.no_huge_pages)
    threads = set_threads(args.threads)
    import torch

    from cliper.config.loader import load_config
    from cliper.training.runner import build_features, build_model, load_dataset, make_evaluator, uses_features
    from cliper.training.trainer import Trainer

    overrides = [f"dataset.path={args.path}", f"model.name={args.model}", f"train.epochs={max(1, args.epochs)}",
                 "train.checkpoint=false", *args.override]
    if args.image_dim:
        overrides.append(f"features.random_image_dim={args.image_dim}")
    if args.text_dim:
        overrides.append(f"features.random_text_dim={args.text_dim}")
    cfg = load_config(overrides=overrides)
    data = load_dataset(cfg)
    device = torch.device("cpu")
    t0 = time.perf_counter()
    features = build_features(cfg, data.n_items) if uses_features(cfg) else None
    model = build_model(cfg, data, features, device, own_features=True)
    del features
    build_s = time.perf_counter() - t0
    base_rss = peak_rss_mb()
    evaluator = make_evaluator(cfg, data, device)
    trainer = Trainer(model, data, evaluator, cfg.train, cfg.eval.valid_metric, cfg.seed, None,
                      progress=False, device=device)
    epochs, epochs_cpu, losses = [], [], []
    for epoch in range(1, args.epochs + 1):
        t, c = time.perf_counter(), time.process_time()
        losses.append(trainer.train_epoch(epoch))
        epochs.append(time.perf_counter() - t)
        epochs_cpu.append(time.process_time() - c)
    evals, evals_cpu, recall = [], [], None
    for _ in range(args.evals):
        model.train()  # each pass cold, as after a training epoch (a model left in eval mode keeps its cache)
        t, c = time.perf_counter(), time.process_time()
        recall = evaluator.evaluate(model, "valid")["recall@20"]
        evals.append(time.perf_counter() - t)
        evals_cpu.append(time.process_time() - c)
    t = time.perf_counter()
    evaluator.evaluate(model, "test")
    test_s = time.perf_counter() - t
    peak = peak_rss_mb()  # before the split and the bare operations, which allocate their own temporaries
    reps, ranks, width = split_pass(model, evaluator, args.evals)
    bare, bare_cpu = [], []
    for _ in range(args.evals):
        c = time.process_time()
        bare.append(bare_eval_ops(evaluator, data.n_users, data.n_items))
        bare_cpu.append(time.process_time() - c)
    bare_own_cpu = bare_cpu if width == BARE_DIM else [_cpu_seconds(bare_eval_ops, evaluator, data.n_users,
                                                                     data.n_items, width) for _ in range(args.evals)]
    searches = pass_searches(model)
    search_cpu = [_cpu_seconds(bare_search_ops, searches) for _ in range(args.evals)] if searches else [0.0]
    eval_s, bare_s = sum(evals) / len(evals), sum(bare) / len(bare)
    eval_cpu, bare_own = sum(evals_cpu) / len(evals_cpu), sum(bare_own_cpu) / len(bare_own_cpu)
    search_s = sum(search_cpu) / len(search_cpu)
    repr_s, rank_s = sum(reps) / len(reps), sum(ranks) / len(ranks)
    repr_gflop = representation_gflop(model) if args.floor_steps > 0 else None
    products = training_floor(trainer, model, args.epochs + 1, args.floor_steps)  # last: its steps train the model
    if products is not None:
        products["repr_gflop"] = repr_gflop
        products["repr_floor_s"] = repr_gflop / products["peak_gflops"]
        products["x_bare_repr_floor_cpu"] = eval_cpu / (bare_own + products["repr_floor_s"])
    return {
        "dataset": args.dataset, "model": args.model, "users": data.n_users, "items": data.n_items,
        "image_dim": args.image_dim, "text_dim": args.text_dim, "threads": threads, "huge_pages": huge_pages_active(),
        "torch_threads": torch.get_num_threads(), "build_s": build_s, "epoch_s": sum(epochs) / len(epochs) if epochs else None,
        "epoch_s_all": epochs, "epoch_cpu_s": sum(epochs_cpu) / len(epochs_cpu) if epochs_cpu else None,
        "epoch_cpu_s_all": epochs_cpu, "eval_s": eval_s, "eval_s_all": evals, "test_s": test_s, "bare_s": bare_s,
        "x_bare": eval_s / bare_s, "eval_cpu_s": eval_cpu, "eval_cpu_s_all": evals_cpu,
        "bare_cpu_s": sum(bare_cpu) / len(bare_cpu), "x_bare_cpu": sum(evals_cpu) / sum(bare_cpu),
        "repr_cpu_s": repr_s, "rank_cpu_s": rank_s, "score_dim": width, "bare_own_cpu_s": bare_own,
        "x_bare_own_cpu": eval_cpu / bare_own, "rank_x_bare_own_cpu": rank_s / bare_own,
        "bare_search_cpu_s": search_s, "x_own_bare_cpu": eval_cpu / (bare_own + search_s),
        "peak_rss_gib": peak / 1024, "base_rss_gib": base_rss / 1024,
        "loaded_features": uses_features(cfg), "last_loss": losses[-1] if losses else None, "valid_recall@20": recall,
        "products": products,
    }


def representation_gflop(model) -> float:
    """GFLOP of the dense products of one cold ``score_embeddings()`` (eval mode, no gradients): the
    arithmetic a valid pass must do before it ranks (MMGCN's projection of every item and its layers,
    LATTICE's kNN products; near zero for ID-only models)."""
    import torch

    from dense_products import DenseProducts

    model.train()
    model.eval()  # clears the cache
    with torch.no_grad(), DenseProducts() as p:
        model.score_embeddings()
    model.train()
    return p.flops / 1e9


def training_floor(trainer, model, epoch: int, steps: int) -> dict | None:
    """The dense products of a training epoch (:mod:`dense_products`: the hook and first step of
    ``epoch``, then ``steps - 1`` later steps) and the processor's best product rate, measured before
    and after them (the higher one: the floor must not rise with a slow moment); None when
    ``steps`` is 0."""
    if steps <= 0:
        return None
    from dense_products import epoch_floor, epoch_products, peak_gflops

    before = peak_gflops()
    counted = epoch_products(trainer, model, epoch, steps)
    return {**counted, **epoch_floor(counted, max(before, peak_gflops()))}


INDEPENDENT = Path(__file__).resolve().parent / "independent"
# the reference runs MMRec's computation where an independent model's default follows a cliper decision
# instead: MMRec trains the raw feature tables (``from_pretrained(freeze=False)``), cliper's defaults freeze them
REF_PARAMS = {m: {"train_features": 1} for m in ("freedom", "bm3", "mgcn", "smore")}


def has_reference(model: str) -> bool:
    """Whether ``benchmarks/independent/<model>.py`` (MMRec's computation, independent code) exists."""
    return (INDEPENDENT / f"{model}.py").is_file()


def reference_worker(args) -> dict:
    """Runs inside its own fresh subprocess: ``--ref-epochs`` epochs of the independent implementation
    of ``args.model`` (``benchmarks/independent/<model>.py``: MMRec's computation, e.g. VBPR projecting
    every item at every batch, written without cliper's models) through the side-by-side harness's
    MMRec-semantics loop (shuffled pairs, one negative, Adam, ``pre_epoch``), then one valid pass of
    its ranking (NumPy). Same graph, same feature widths (seeded random), same threads; glibc's
    allocator defaults, as a plain PyTorch program runs."""
    import importlib

    import torch

    from cliper.models import get_model_class
    from cliper.runtime import peak_rss_mb, set_threads

    threads = set_threads(args.threads)
    sys.path.insert(0, str(INDEPENDENT))
    import harness

    reads_features = bool(getattr(get_model_class(args.model), "modalities", ()))
    inputs = harness.load_inputs(args.path, features="random", image_dim=args.image_dim if reads_features else 0,
                                 text_dim=args.text_dim if reads_features else 0)
    module = importlib.import_module(args.model)
    params = REF_PARAMS.get(args.model, {})
    t0 = time.perf_counter()
    model, opt, sched, sampler = harness.reference_setup(module.Model, inputs, 0, params)
    build_s = time.perf_counter() - t0
    epochs, epochs_cpu = [], []
    for _ in range(args.ref_epochs):
        t, c = time.perf_counter(), time.process_time()
        harness.train_epoch(model, opt, sched, sampler)
        epochs.append(time.perf_counter() - t)
        epochs_cpu.append(time.process_time() - c)
    t = time.perf_counter()
    with torch.no_grad():
        recall = harness.evaluate(model, inputs, "valid")["recall@20"]
    return {"dataset": args.dataset, "model": args.model, "threads": threads, "params": params, "build_s": build_s,
            "epoch_s": sum(epochs) / len(epochs), "epoch_s_all": epochs, "epoch_cpu_s": sum(epochs_cpu) / len(epochs_cpu),
            "eval_s": time.perf_counter() - t, "peak_rss_gib": peak_rss_mb() / 1024, "valid_recall@20": recall}


def _cap(value: str) -> int | None:
    return None if str(value).lower() in ("none", "null") else int(value)


def run_reference(args, dataset: str, path: Path, model: str) -> dict | None:
    """The same-run reference of ``model`` (:func:`reference_worker` in a fresh process), or None."""
    if args.ref_epochs <= 0 or not has_reference(model):
        return None
    cmd = [sys.executable, __file__, "--ref-worker", "--dataset", dataset, "--path", str(path), "--model", model,
           "--ref-epochs", str(args.ref_epochs), "--image-dim", str(args.image_dim), "--text-dim", str(args.text_dim)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return _run_worker(cmd, dict(os.environ), args.timeout, dataset, model)


def _run_worker(cmd: list[str], env: dict, timeout: int, dataset: str, model: str) -> dict:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"dataset": dataset, "model": model, "error": f"over --timeout {timeout} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        why = "stopped by a signal" if proc.returncode < 0 else f"exit {proc.returncode}"
        return {"dataset": dataset, "model": model, "error": f"{why}: " + " | ".join(tail)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_one(args, dataset: str, path: Path, model: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--dataset", dataset, "--path", str(path), "--model", model,
           "--epochs", str(args.epochs), "--evals", str(args.evals), "--image-dim", str(args.image_dim),
           "--text-dim", str(args.text_dim), "--floor-steps", str(args.floor_steps)]
    for o in args.override:
        cmd += ["-o", o]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.keep_freed_memory:
        cmd.append("--keep-freed-memory")
    cmd += ["--freed-cap-mib", str(args.freed_cap_mib)]
    if args.no_huge_pages:
        cmd.append("--no-huge-pages")
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="cliper-bench-cache-") as cold:
        env["CLIPER_CACHE_DIR"] = args.cache_dir or cold
        row = _run_worker(cmd, env, args.timeout, dataset, model)
    if "error" not in row:
        ref = run_reference(args, dataset, path, model)
        if ref is not None:
            row["reference"] = ref
    return row


COLUMNS = ["dataset", "model", "threads", "build s", "s/epoch", "cpu s/epoch", "s/eval", "bare s", "x bare", "x bare cpu", "eval cpu s",
           "repr cpu s", "rank cpu s", "score dim", "bare cpu s own dim", "x bare cpu own dim", "rank / bare cpu own dim",
           "bare search cpu s", "x own bare cpu", "peak GiB", "valid R@20", "MMRec s/epoch", "MMRec s/eval", "MMRec GiB", "peak / MMRec",
           "train x MMRec", "train x MMRec cpu", "ref s/epoch", "ref cpu s/epoch", "train x ref", "train x ref cpu",
           "ref GiB", "peak / ref", "ref valid R@20", "dense GFLOP/epoch", "products s/epoch", "products GFLOP/s",
           "peak GFLOP/s", "floor s/epoch", "ref / floor", "repr GFLOP", "repr floor s", "x bare + repr floor cpu"]


def _r(x, n=2):
    return None if x is None else round(x, n)


def result_row(r: dict) -> dict:
    """One row of the JSON result (rounded figures; the MMRec columns come from REFERENCE)."""
    if "error" in r:
        return {"dataset": r["dataset"], "model": r["model"], "build s": "error: " + r["error"]}
    ref = REFERENCE.get((r["dataset"], r["model"]), (None, None, None))
    return {
        "dataset": r["dataset"], "model": r["model"], "threads": r["threads"], "build s": _r(r["build_s"]),
        "s/epoch": _r(r["epoch_s"]), "cpu s/epoch": _r(r.get("epoch_cpu_s")), "s/eval": _r(r["eval_s"]), "bare s": _r(r["bare_s"]),
        "x bare": _r(r["x_bare"]), "x bare cpu": _r(r.get("x_bare_cpu")), "eval cpu s": _r(r.get("eval_cpu_s")),
        "repr cpu s": _r(r.get("repr_cpu_s")), "rank cpu s": _r(r.get("rank_cpu_s")), "score dim": r.get("score_dim"),
        "bare cpu s own dim": _r(r.get("bare_own_cpu_s")), "x bare cpu own dim": _r(r.get("x_bare_own_cpu")),
        "rank / bare cpu own dim": _r(r.get("rank_x_bare_own_cpu")),
        "bare search cpu s": _r(r.get("bare_search_cpu_s")), "x own bare cpu": _r(r.get("x_own_bare_cpu")),
        "peak GiB": _r(r["peak_rss_gib"]), "valid R@20": _r(r["valid_recall@20"], 4),
        "MMRec s/epoch": ref[0], "MMRec s/eval": ref[1], "MMRec GiB": ref[2],
        "peak / MMRec": _r(r["peak_rss_gib"] / ref[2]) if ref[2] else None,
        "train x MMRec": _r(ref[0] / r["epoch_s"]) if ref[0] and r["epoch_s"] else None,
        "train x MMRec cpu": _r(ref[0] / r["epoch_cpu_s"]) if ref[0] and r.get("epoch_cpu_s") else None,
        **reference_cells(r),
        **floor_cells(r),
    }


def floor_cells(r: dict) -> dict:
    """The dense-product columns of a row: the epoch's dense arithmetic, the time its products took
    and their rate, the processor's best rate, the floor (arithmetic / best rate) and ``ref / floor``,
    the highest ``train x ref`` this computation allows on this processor (None without products,
    or without a reference)."""
    p = r.get("products")
    if not p:
        return {}
    floor = p["floor_s_epoch"]
    ref = r.get("reference") or {}
    return {"dense GFLOP/epoch": _r(p["dense_gflop_epoch"], 1), "products s/epoch": _r(p["products_s_epoch"]),
            "products GFLOP/s": _r(p["products_gflops"], 1), "peak GFLOP/s": _r(p["peak_gflops"], 1),
            "floor s/epoch": _r(floor),
            "ref / floor": _r(ref["epoch_s"] / floor) if floor > 0.01 and ref.get("epoch_s") else None,
            "repr GFLOP": _r(p.get("repr_gflop"), 2), "repr floor s": _r(p.get("repr_floor_s"), 3),
            "x bare + repr floor cpu": _r(p.get("x_bare_repr_floor_cpu"))}


def reference_cells(r: dict) -> dict:
    """The same-run reference columns of a row (None where no reference ran or it failed)."""
    ref = r.get("reference") or {}
    if "error" in ref:
        return {"ref s/epoch": "error: " + ref["error"]}
    if not ref:
        return {}
    return {"ref s/epoch": _r(ref["epoch_s"]), "ref cpu s/epoch": _r(ref["epoch_cpu_s"]),
            "train x ref": _r(ref["epoch_s"] / r["epoch_s"]) if r.get("epoch_s") else None,
            "train x ref cpu": _r(ref["epoch_cpu_s"] / r["epoch_cpu_s"]) if r.get("epoch_cpu_s") else None,
            "ref GiB": _r(ref["peak_rss_gib"]), "peak / ref": _r(r["peak_rss_gib"] / ref["peak_rss_gib"]),
            "ref valid R@20": _r(ref["valid_recall@20"], 4)}


def _fmt(x, spec=".2f") -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[dict]) -> None:
    head = (f"{'dataset':8} {'model':9} {'thr':>3} {'build s':>8} {'s/epoch':>8} {'cpu s/ep':>8} {'s/eval':>7} {'bare s':>7} "
            f"{'x bare':>6} {'cpu':>5} {'repr':>6} {'rank':>6} {'dim':>4} {'bare@d':>6} {'x@d':>5} {'rank@d':>6} {'search':>6} {'x own':>5} {'peak GiB':>8} {'R@20':>7} | {'ref s/ep':>8} {'x ref':>6} {'(cpu)':>6} {'ref GiB':>7} {'ref R@20':>8} | {'prod s':>6} {'GF/s':>5} {'peak':>5} {'floor':>6} {'ref/fl':>6} {'x+repr':>6} | {'MMRec s/ep':>10} {'s/eval':>7} {'GiB':>5} {'x MMRec':>7} {'(cpu)':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['dataset']:8} {r['model']:9} error: {r['error']}")
            continue
        ref = REFERENCE.get((r["dataset"], r["model"]), (None, None, None))
        ratio = [ref[0] / e if ref[0] and e else None for e in (r["epoch_s"], r.get("epoch_cpu_s"))]
        print(f"{r['dataset']:8} {r['model']:9} {r['threads']:>3} {r['build_s']:8.2f} {_fmt(r['epoch_s']):>8} "
              f"{_fmt(r.get('epoch_cpu_s')):>8} "
              f"{r['eval_s']:7.2f} {r['bare_s']:7.2f} {r['x_bare']:6.2f} {r['x_bare_cpu']:5.2f} {r['repr_cpu_s']:6.2f} {r['rank_cpu_s']:6.2f} "
              f"{r['score_dim']:>4} {r['bare_own_cpu_s']:6.2f} {r['x_bare_own_cpu']:5.2f} {r['rank_x_bare_own_cpu']:6.2f} "
              f"{r.get('bare_search_cpu_s', 0.0):6.2f} {_fmt(r.get('x_own_bare_cpu')):>5} {r['peak_rss_gib']:8.2f} "
              f"{_fmt(r['valid_recall@20'], '.4f'):>7} | {_ref_text(r)} | {_floor_text(r)} | {_fmt(ref[0]):>10} {_fmt(ref[1]):>7} {_fmt(ref[2]):>5} "
              f"{_fmt(ratio[0]):>7} {_fmt(ratio[1]):>6}")


def _ref_text(r: dict) -> str:
    cells = reference_cells(r)
    if isinstance(cells.get("ref s/epoch"), str):
        return f"{cells['ref s/epoch'][:43]:43}"
    return (f"{_fmt(cells.get('ref s/epoch')):>8} {_fmt(cells.get('train x ref')):>6} {_fmt(cells.get('train x ref cpu')):>6} "
            f"{_fmt(cells.get('ref GiB')):>7} {_fmt(cells.get('ref valid R@20'), '.4f'):>8}")


def _floor_text(r: dict) -> str:
    c = floor_cells(r)
    return (f"{_fmt(c.get('products s/epoch')):>6} {_fmt(c.get('products GFLOP/s'), '.1f'):>5} "
            f"{_fmt(c.get('peak GFLOP/s'), '.1f'):>5} {_fmt(c.get('floor s/epoch')):>6} {_fmt(c.get('ref / floor')):>6} "
            f"{_fmt(c.get('x bare + repr floor cpu')):>6}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="comma-separated model names (default: every registered model)")
    ap.add_argument("--datasets", default="baby,sports",
                    help="baby, sports (skipped when the shared data is absent), clothing (synthetic, for memory)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs measured (mean reported)")
    ap.add_argument("--evals", type=int, default=2, help="valid passes measured (mean reported); one test pass follows")
    ap.add_argument("--image-dim", type=int, default=4096)
    ap.add_argument("--text-dim", type=int, default=384)
    ap.add_argument("--clip", action="store_true", help="768-d image and text features (CLIP ViT-L/14 width)")
    ap.add_argument("-o", "--override", action="append", default=[], help="extra config override, e.g. model.dropout=0.9")
    ap.add_argument("--cache-dir", default=None, help="kNN graph cache to use (default: a fresh, empty one)")
    ap.add_argument("--scratch", default=None, help="where the synthetic Clothing graph is written (default: a temp dir)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per model before giving up")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: the runner's rule: $CLIPER_THREADS, else cliper.runtime.default_threads)")
    ap.add_argument("--keep-freed-memory", "--mallopt", dest="keep_freed_memory", action="store_true",
                    help="runtime.keep_freed_memory: glibc keeps large freed blocks (fewer page faults, higher peak)")
    ap.add_argument("--freed-cap-mib", default="64",
                    help="runtime.freed_memory_cap_mib (cliper train's default 64; 'none': glibc's dynamic defaults)")
    ap.add_argument("--no-huge-pages", action="store_true",
                    help="runtime.huge_pages false (cliper train's default is on: torch's blocks >= 2 MiB on huge pages)")
    ap.add_argument("--json", default=None, help="also write the raw rows to this JSON file")
    ap.add_argument("--name", default="models",
                    help="result name: writes benchmarks/results/<name>.json (rendered by benchmarks/render.py)")
    ap.add_argument("--ref-epochs", type=int, default=1,
                    help="epochs of the same-run reference (benchmarks/independent/<model>.py, MMRec's computation) "
                         "timed in a fresh process after each model; 0: none")
    ap.add_argument("--floor-steps", type=int, default=4,
                    help="training steps whose dense products are counted after the measurements (the first step "
                         "apart, then the mean of the others; benchmarks/dense_products.py): the floor columns; 0: none")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ref-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dataset", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.clip:
        args.image_dim = args.text_dim = 768
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.ref_worker:
        print(json.dumps(reference_worker(args)))
        return

    from cliper.models import available_models

    models = args.models.split(",") if args.models else available_models()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cliper-bench-data-") as tmp:
        scratch = Path(args.scratch or tmp)
        for ds in args.datasets.split(","):
            if ds not in (*DATASETS, "clothing"):
                sys.exit(f"unknown dataset {ds!r}; choose from {', '.join([*DATASETS, 'clothing'])}")
            path = dataset_path(ds, scratch)
            if path is None:
                print(f"skipping {ds}: shared data {DATASETS[ds]} not found")
                continue
            for m in models:
                print(f"... {ds} {m}", file=sys.stderr, flush=True)
                rows.append(run_one(args, ds, path, m))
    threads = sorted({r["threads"] for r in rows if "threads" in r})
    memory = ("runtime.keep_freed_memory on" if args.keep_freed_memory else
              "glibc's dynamic allocator defaults" if _cap(args.freed_cap_mib) is None else
              f"runtime.freed_memory_cap_mib {args.freed_cap_mib}")
    memory += ", huge pages off" if args.no_huge_pages else ", runtime.huge_pages on"
    print(f"seeded random features: image {args.image_dim}-d, text {args.text_dim}-d (loaded only by models that read "
          f"them); peak = VmHWM of a fresh process per model; {args.epochs} epoch(s), {args.evals} valid pass(es) + 1 "
          f"test pass; threads {threads}; {memory}; load average now {os.getloadavg()[0]:.2f}")
    from results_io import cpu_model

    print(f"processor: {cpu_model()}; x ref = the same-run reference (benchmarks/independent, MMRec's computation) / "
          "s/epoch; x MMRec = issue 13's MMRec figures, measured on the machine it was filed on, / s/epoch")
    print_table(rows)
    if not rows:
        sys.exit("nothing measured: no result written (an existing result file is kept)")
    write_result(args.name, COLUMNS, [result_row(r) for r in rows], notes=(
        f"Seeded random features (image {args.image_dim}-d, text {args.text_dim}-d), loaded only by models that "
        "read features: speed and memory only, not results of the method. 'clothing' is a SYNTHETIC graph of Amazon "
        "Clothing's size (39,387 users, 23,033 items, 278,677 interactions). "
        f"s/epoch = mean of {args.epochs} epoch(s) of the trainer's train_epoch; s/eval = mean of {args.evals} "
        "full-ranking valid pass(es); bare s = the same chunks' [users x 64] @ [64 x items] matmul + train mask + "
        "top-50 in the same process; x bare = s/eval / bare s (target <= 1.1), x bare cpu = the same ratio of process CPU seconds (less swayed by other processes on a shared machine); eval cpu s = process CPU "
        "seconds of the pass; repr cpu s = score_embeddings() from a cold cache (eval mode, no gradients), rank cpu s = "
        "the valid pass with that cache warm (CPU s); score dim = the width the model scores with; bare cpu s own "
        "dim = the bare ops at that width (CPU s), x bare cpu own dim = eval cpu s / bare cpu s own dim, rank / bare "
        "cpu own dim = rank cpu s / bare cpu s own dim (below 1: the evaluator writes its score chunks into one "
        "buffer per pass in cache-sized tiles, the bare ops are the plain per-chunk product); bare search cpu s = the plain exact kNN searches (chunked cosine products + topk) a pass of the model must run itself (LATTICE: its learned graph, one per modality; 0 for the others), x own bare cpu = eval cpu s / (bare cpu s own dim + bare search cpu s): the pass against the bare operations of its own arithmetic; peak = VmHWM of a fresh process per "
        "model after the epochs, the valid passes and one test pass (Python, torch, data, features, model, "
        f"temporaries); {memory}; threads = torch threads of the row; build s "
        + ("reads the kNN graphs from the warm cache --cache-dir (not built). " if args.cache_dir else
           "includes building kNN graphs from an empty cache. ") + "valid R@20 after the measured epochs is a plumbing check. " + REFERENCE_SOURCE + " " + FLOOR_SOURCE),
        threads=threads[0] if len(threads) == 1 else None)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
