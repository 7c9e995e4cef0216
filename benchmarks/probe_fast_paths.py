"""A/B of VBPR's and SLMRec's training fast paths against their plain forms, in ONE process.

The model is built as ``cliper train`` builds it (``random_run``), with its allocator defaults
(``apply_memory_settings``). Each round trains ``--batches`` batches with the fast path, then the
same batches (re-seeded) with the plain one (VBPR: ``gather_project``; SLMRec:
``split_propagation`` and the one-buffer InfoNCE), alternating; medians of the per-batch
process CPU seconds and minor page faults per batch are printed. The weights keep training,
so the two paths see nearly the same parameters. ``--against mkl`` keeps the fast path on both
sides and turns off oneDNN's fp32 products (``fused_ops``) on the other, so MKL's run instead;
``--against pair-loss`` (VBPR) keeps it too and runs the loss as its autograd expression on the
other side instead of ``layers.pair_rows_loss``.

    python benchmarks/probe_fast_paths.py --model vbpr --rounds 3 --batches 8
    python benchmarks/probe_fast_paths.py --model slmrec --against mkl
    python benchmarks/probe_fast_paths.py --model vbpr --against pair-loss --rounds 6
"""

from __future__ import annotations

import json
import resource
import statistics
import time

from random_run import add_run_args, random_run, run_parser, time_batches


def main() -> None:
    ap = run_parser(__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--against", choices=("plain", "mkl", "pair-loss"), default="plain",
                    help="the other side: the plain forms, the fast path with MKL's products instead of oneDNN's, "
                         "or (VBPR) the fast path with the loss as its autograd expression")
    add_run_args(ap, dims=False)
    args = ap.parse_args()
    from cliper.runtime import apply_memory_settings

    apply_memory_settings()  # cliper train's allocator defaults (before torch allocates anything)
    import torch

    import cliper.models.fused_ops as fused_ops
    import cliper.models.slmrec as slmrec

    torch.set_num_threads(args.threads)
    fused_nce = slmrec._info_nce

    def plain_nce(a, b, temp):
        return torch.nn.functional.cross_entropy(a @ b.T / temp, torch.arange(a.shape[0]))

    def use(model, fast: bool) -> None:
        if args.against == "mkl":
            fused_ops._ONEDNN = None if fast else False  # None: probed again on first use
            return
        if args.against == "pair-loss":
            if args.model != "vbpr":
                raise SystemExit("--against pair-loss is VBPR's")
            model.pair_loss = fast
            return
        if args.model == "vbpr":
            model.gather_project = fast
        elif args.model == "slmrec":
            model.split_propagation = fast
            slmrec._info_nce = fused_nce if fast else plain_nce
        else:
            raise SystemExit("--model must be vbpr or slmrec")

    with random_run(args.dataset, args.model, overrides=args.override) as run:
        from cliper.training.seed import seed_epoch

        stats: dict[str, dict[str, list[float]]] = {"fast": {"cpu": [], "faults": []}, "plain": {"cpu": [], "faults": []}}
        for r in range(args.rounds):
            for name in ("fast", "plain"):
                use(run.model, name == "fast")
                seed_epoch(run.cfg.seed, r + 1)
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                cpu, _ = time_batches(run.trainer, run.model, r + 1, args.batches, clock=time.process_time)
                stats[name]["cpu"] += cpu[1:]  # the first batch of a round warms up
                stats[name]["faults"].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / args.batches)
        out = {k: {"median_batch_cpu_ms": round(1e3 * statistics.median(v["cpu"]), 1),
                   "faults_per_batch": round(statistics.median(v["faults"]))} for k, v in stats.items()}
        out["plain/fast"] = round(out["plain"]["median_batch_cpu_ms"] / out["fast"]["median_batch_cpu_ms"], 2)
        print(json.dumps({"model": args.model, "against": args.against, "threads": torch.get_num_threads(), **out}))


if __name__ == "__main__":
    main()
