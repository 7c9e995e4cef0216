"""torch.profiler view of a few training batches of one backbone (MGCN / LGMRec / DRAGON / SMORE work).

Builds the model like ``probe_batches.py`` (packaged YAML defaults, seeded random 4096/384
features, cold kNN cache), trains ``--warmup`` batches unprofiled, then ``--batches`` under
``torch.profiler`` and prints the top operators by self CPU time and the mean seconds per batch.
Figures are plumbing/speed only (random features).

    python benchmarks/probe_new_models.py --model lgmrec --batches 3
    python benchmarks/probe_new_models.py --model lgmrec --batches 3 --compare-plain

``--compare-plain`` profiles the same batches twice in ONE process, first with the model
modules' fused kernels swapped for the plain torch expressions they replace
(``models/fused_ops.py``), then with the fused ones, so the before/after ratio is taken under
the same load.
"""

from __future__ import annotations

import time

from random_run import add_run_args, batches_per_epoch, random_run, run_parser


def main() -> None:
    ap = run_parser(__doc__)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--shapes", action="store_true", help="group the table by input shapes")
    ap.add_argument("--compare-plain", action="store_true", help="profile plain torch first, then the fused kernels")
    add_run_args(ap, dims=False)
    args = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    with random_run(args.dataset, args.model, overrides=args.override) as run:
        model, trainer = run.model, run.trainer
        model.train()
        model.pre_epoch_hook(1)

        def step(batch):
            trainer.train_step(batch, 1)

        batches = trainer.batches(1)
        for _ in range(args.warmup):
            step(next(batches))
        variants = ["plain", "fused"] if args.compare_plain else ["as built"]
        results = {}
        for variant in variants:
            restore = _use_plain_kernels() if variant == "plain" else (lambda: None)
            try:
                t = time.perf_counter()
                with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
                    for _ in range(args.batches):
                        step(next(batches))
                results[variant] = ((time.perf_counter() - t) / args.batches, prof)
            finally:
                restore()
    n_batches = batches_per_epoch(run)
    for variant, (per_batch, prof) in results.items():
        print(f"== {variant}")
        print(prof.key_averages(group_by_input_shape=args.shapes).table(sort_by="self_cpu_time_total",
                                                                        row_limit=args.top))
        print(f"{args.model} {args.dataset} [{variant}]: {per_batch:.3f} s/batch (profiled), x{n_batches} batches "
              f"= {per_batch * n_batches:.1f} s/epoch extrapolated, threads={torch.get_num_threads()}")
    if len(results) == 2:
        print(f"plain / fused time per batch: {results['plain'][0] / results['fused'][0]:.2f}x")


def _use_plain_kernels():
    """Swap the fused kernels in the model modules for the plain expressions; returns an undo function."""
    import torch
    import torch.nn.functional as F

    from cliper.models import lgmrec, mgcn, smore

    def plain_matmul(x, w):
        return x @ w

    def plain_lse(anchors, candidates, temperature):
        return torch.logsumexp(F.normalize(anchors, dim=1) @ F.normalize(candidates, dim=1).T / temperature, 1)

    def plain_info_nce(view1, view2, temperature):
        logits = F.normalize(view1, dim=1) @ F.normalize(view2, dim=1).T / temperature
        return (torch.logsumexp(logits, 1) - logits.diagonal()).mean()

    saved = [(lgmrec, "feature_matmul", plain_matmul), (lgmrec, "cosine_logsumexp", plain_lse),
             (mgcn, "in_batch_info_nce", plain_info_nce), (smore, "in_batch_info_nce", plain_info_nce)]
    old = [(mod, name, getattr(mod, name)) for mod, name, _ in saved]
    for mod, name, fn in saved:
        setattr(mod, name, fn)

    def undo():
        for mod, name, fn in old:
            setattr(mod, name, fn)
    return undo

if __name__ == "__main__":
    main()
