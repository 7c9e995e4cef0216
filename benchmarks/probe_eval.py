"""One evaluation pass of a backbone, split and profiled: representation s, ranking s, bare s.

The model is built as ``cliper train`` builds it (:mod:`random_run`; fresh weights, or after
``--batches N`` trained batches). Each repetition times, in this one process: the
representation (``score_embeddings()`` from a cold cache, eval mode, no gradients), the ranking
(a valid pass with that cache warm), a whole cold valid pass, and the bare ranking ops at 64-d
and at the model's own score width (:func:`bench_models.bare_eval_ops`), and the 64-d bare ops
the way the evaluator now runs them (one score buffer per pass, cache-sized tiles: ``bare64_tiled``). Medians of wall and
process CPU seconds. ``--profile`` prints torch.profiler's top entries (by input shape) of one cold representation.
The allocator is set as ``cliper train`` sets it (``cliper.runtime.apply_memory_settings``: glibc's
32 MiB mmap threshold, the 64 MiB trim cap, torch's huge pages); ``--mmap-threshold-mib N`` also
raises glibc's mmap threshold, an experiment only (it fragments the heap: docs/training.md#memory).

    python benchmarks/probe_eval.py --model lattice --reps 3 --profile
"""

from __future__ import annotations

import ctypes
import json
import os
import statistics
import time

from random_run import add_run_args, build_run, run_parser, time_batches


def bare_tiled(evaluator, n_users: int, n_items: int, dim: int = 64) -> None:
    """The bare ops as the evaluator now runs them: one score buffer per pass, CPU tiles."""
    import torch

    from cliper.evaluation.evaluator import TILE_COLS, TILE_ROWS

    g = torch.Generator().manual_seed(0)
    users_emb, items_emb = torch.randn(n_users, dim, generator=g), torch.randn(n_items, dim, generator=g)
    buf = torch.empty(min(evaluator.batch_size, n_users) * n_items)
    with torch.no_grad():
        for users, (rows, cols), _ in evaluator._chunks("valid"):
            u = users_emb[torch.from_numpy(users)]
            scores = buf[: u.shape[0] * n_items].view(u.shape[0], n_items)
            for r in range(0, u.shape[0], TILE_ROWS):
                for c in range(0, n_items, TILE_COLS):
                    torch.mm(u[r : r + TILE_ROWS], items_emb[c : c + TILE_COLS].T,
                             out=scores[r : r + TILE_ROWS, c : c + TILE_COLS])
            scores[rows, cols] = -torch.inf
            torch.topk(scores, min(50, n_items), dim=1)


def _timed(fn) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = run_parser(__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batches", type=int, default=0, help="train this many batches first (0: fresh weights)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--mmap-threshold-mib", type=int, default=0,
                    help="also raise glibc's mmap threshold to N MiB (an experiment; 0: cliper train's 32 MiB)")
    add_run_args(ap)
    args = ap.parse_args()

    from cliper.runtime import apply_memory_settings

    apply_memory_settings()  # cliper train's defaults, before torch allocates anything
    if args.mmap_threshold_mib:
        ctypes.CDLL("libc.so.6").mallopt(-3, args.mmap_threshold_mib << 20)  # M_MMAP_THRESHOLD
    import torch

    from bench_models import BARE_DIM, bare_eval_ops

    torch.set_num_threads(args.threads)
    os.environ.setdefault("CLIPER_CACHE_DIR", "/tmp/cliper-probe-eval-cache")  # warm kNN cache across runs
    run = build_run(args.dataset, args.model, image_dim=args.image_dim, text_dim=args.text_dim,
                    overrides=args.override)
    model, ev, data = run.model, run.evaluator, run.data
    if args.batches:
        time_batches(run.trainer, model, 1, args.batches)

    def representation():
        model.train()
        model.eval()
        with torch.no_grad():
            out = model.score_embeddings()
        return out

    width = int(representation()[1].shape[1])
    rows = {k: [] for k in ("repr", "rank", "pass", "bare64", "bare_own", "bare64_tiled")}

    def cold_pass():
        model.train()
        ev.evaluate(model, "valid")

    for _ in range(args.reps):
        rows["repr"].append(_timed(representation))
        rows["rank"].append(_timed(lambda: ev.evaluate(model, "valid")))
        rows["pass"].append(_timed(cold_pass))
        rows["bare64"].append(_timed(lambda: bare_eval_ops(ev, data.n_users, data.n_items)))
        rows["bare_own"].append(_timed(lambda: bare_eval_ops(ev, data.n_users, data.n_items, width))
                                if width != BARE_DIM else rows["bare64"][-1])
        rows["bare64_tiled"].append(_timed(lambda: bare_tiled(ev, data.n_users, data.n_items)))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in rows.items()}
    out = {"model": args.model, "mmap_threshold_mib": args.mmap_threshold_mib, "dataset": args.dataset, "threads": torch.get_num_threads(), "score_dim": width,
           "trained_batches": args.batches, "reps": args.reps, "load": round(os.getloadavg()[0], 2)}
    for k, (w, c) in med.items():
        out[f"{k}_s"], out[f"{k}_cpu_s"] = round(w, 3), round(c, 3)
    out["x_bare"] = round(med["pass"][0] / med["bare64"][0], 3)
    out["x_bare_cpu"] = round(med["pass"][1] / med["bare64"][1], 3)
    out["x_bare_own_cpu"] = round(med["pass"][1] / med["bare_own"][1], 3)
    out["rank_x_bare_own_cpu"] = round(med["rank"][1] / med["bare_own"][1], 3)
    print(json.dumps(out), flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            representation()
        print("representation (score_embeddings, cold):")
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=args.top,
                                                                 max_name_column_width=40, max_shapes_column_width=70))


if __name__ == "__main__":
    main()
