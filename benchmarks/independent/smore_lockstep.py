"""SMORE in lockstep: cliper's model under its own Trainer and the independent model (``smore.py``)
under plain Adam with its own learning-rate decay, from the SAME initial parameters (cliper's,
copied in by ``smore_equal_weights.copy_weights``) and fed the SAME batches (the Trainer's own
``batches(epoch)``), with dropout off on both sides (its masks are the one draw the two cannot
share). If the valid curves then agree to rounding over many epochs, a gap in ``side_by_side.py``
comes from the seeds' draws (initial weights, batch order, dropout masks), not from the code.
A diagnostic, so unlike ``smore.py`` it imports cliper.

    python benchmarks/independent/smore_lockstep.py --dataset /tmp/sbs/demo --seeds 1 2 --epochs 45
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import harness  # noqa: E402
import smore  # noqa: E402
from smore_equal_weights import copy_weights  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="/tmp/sbs/demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=45)
    ap.add_argument("--out", help="write the curves as JSON here")
    args = ap.parse_args()

    from cliper.config.loader import load_config
    from cliper.training.runner import build_features, build_model, load_dataset, make_evaluator
    from cliper.training.trainer import Trainer

    torch.set_num_threads(1)
    inputs = harness.load_inputs(args.dataset, "svd", 512, 384)
    cpu = torch.device("cpu")
    result = {"command": "python " + " ".join(sys.argv), "seeds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        feats = harness.feature_overrides(inputs, Path(tmp))
        for seed in args.seeds:
            cfg = load_config(overrides=[f"dataset.path={args.dataset}", "model.name=smore", f"seed={seed}",
                                         "model.dropout=0.0", "train.checkpoint=false", "threads=1", *feats])
            data = load_dataset(cfg)
            cm = build_model(cfg, data, build_features(cfg, data.n_items), cpu)
            im = smore.Model(inputs, seed, dropout=0.0)
            copy_weights(cm, im)
            trainer = Trainer(cm, data, make_evaluator(cfg, data, cpu), cfg.train, cfg.eval.valid_metric, cfg.seed,
                              None, progress=False, device=cpu)
            opt = torch.optim.Adam([p for p in im.parameters() if p.requires_grad], lr=cfg.train.learning_rate)
            curves = {"cliper": [], "independent": []}
            for epoch in range(1, args.epochs + 1):
                c, i = harness.lockstep_epoch(trainer, im, opt, inputs, epoch)
                curves["cliper"].append(round(c, 6))
                curves["independent"].append(round(i, 6))
            gap = max(abs(x - y) for x, y in zip(*curves.values()))
            result["seeds"][seed] = {**curves, "max_curve_gap": gap}
            print(f"seed {seed}: cliper {curves['cliper'][::5]}", flush=True)
            print(f"seed {seed}: indep. {curves['independent'][::5]}", flush=True)
            print(f"seed {seed}: max |valid R@20 gap| over {args.epochs} epochs {gap:.2e}", flush=True)
    if args.out:
        harness.save(Path(args.out), result)


if __name__ == "__main__":
    main()
