"""Short speed/memory probe of one backbone: build, the first N training batches, one evaluation pass.

For machines too loaded (or models too slow) to run ``bench_models.py``'s full epoch: the
model is built exactly as there (packaged YAML defaults, the runner's ``build_model``, a cold
kNN cache), the first ``--batches`` batches of epoch 1 are trained with the trainer's own
batches and optimiser, and one full-ranking evaluation runs on the valid split. It prints
one JSON line: build seconds, mean seconds per batch, the EXTRAPOLATED seconds per epoch
(mean batch time x batches per epoch; say so when quoting it), eval seconds, and peak RSS
of the process (``VmHWM``: Python + torch + data + the seeded random features the model reads + model).

    python benchmarks/probe_batches.py --model mgcn --dataset sports --batches 3 --threads 1
"""

from __future__ import annotations

import json
import time

from random_run import add_run_args, batches_per_epoch, random_run, run_parser, time_batches


def main() -> None:
    ap = run_parser(__doc__)
    ap.add_argument("--batches", type=int, default=3)
    add_run_args(ap)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from cliper.runtime import peak_rss_mb

    with random_run(args.dataset, args.model, image_dim=args.image_dim, text_dim=args.text_dim,
                    overrides=args.override) as run:
        data, model, evaluator, build_s = run.data, run.model, run.evaluator, run.build_seconds
        times, losses = time_batches(run.trainer, model, 1, args.batches)
        n_batches = batches_per_epoch(run)
        t = time.perf_counter()
        recall = evaluator.evaluate(model, "valid")["recall@20"]
        eval_s = time.perf_counter() - t
    print(json.dumps({
        "dataset": args.dataset, "model": args.model, "users": data.n_users, "items": data.n_items,
        "threads": torch.get_num_threads(), "build_s": round(build_s, 2), "batch_s": [round(x, 2) for x in times],
        "batches_per_epoch": n_batches, "epoch_s_extrapolated": round(sum(times) / len(times) * n_batches, 1),
        "eval_s": round(eval_s, 2), "peak_rss_gib": round(peak_rss_mb() / 1024, 3),
        "losses": [round(x, 4) for x in losses], "valid_recall@20": recall,
    }))


if __name__ == "__main__":
    main()
