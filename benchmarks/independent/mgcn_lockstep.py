"""MGCN in lockstep: cliper's model under its own Trainer and the independent model
(``mgcn.py``) under plain Adam, from the SAME initial parameters (cliper's, copied in) and fed
the SAME batches (the Trainer's own ``batches(epoch)``), on the side-by-side inputs.

Separates "the formulas or the optimiser differ" from "the random draws differ": if the two
valid curves agree to rounding here, any gap in ``side_by_side.py`` comes from the seeds'
initial draws and batch orders. A diagnostic, so unlike ``mgcn.py`` it imports cliper.

    python benchmarks/independent/mgcn_lockstep.py --dataset /tmp/sbs/demo --seeds 1 2 3 --epochs 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import mgcn  # noqa: E402

# cliper parameter name -> independent parameter name
NAMES = {"user_embedding.weight": "user_embedding.weight", "item_embedding.weight": "item_id_embedding.weight",
         **{f"query.{s}": f"query.{s}" for s in ("0.weight", "0.bias", "2.weight")}}
for _m in ("image", "text"):
    for _s in ("weight", "bias"):
        NAMES[f"projections.{_m}.{_s}"] = f"trs.{_m}.{_s}"
        NAMES[f"purifier_gates.{_m}.{_s}"] = f"gate.{_m}.0.{_s}"
        NAMES[f"preference_gates.{_m}.{_s}"] = f"prefer.{_m}.0.{_s}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--image-dim", type=int, default=512)
    ap.add_argument("--text-dim", type=int, default=384)
    args = ap.parse_args()

    from cliper.config.loader import load_config
    from cliper.training.runner import build_features, build_model, load_dataset, make_evaluator
    from cliper.training.trainer import Trainer

    torch.set_num_threads(1)
    inputs = harness.load_inputs(args.dataset, "svd", args.image_dim, args.text_dim)
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        feats = harness.feature_overrides(inputs, Path(tmp))
        for seed in args.seeds:
            cfg = load_config(overrides=[f"dataset.path={args.dataset}", "model.name=mgcn", f"seed={seed}",
                                         "train.checkpoint=false", "threads=1", *feats])
            data = load_dataset(cfg)
            cm = build_model(cfg, data, build_features(cfg, data.n_items), cpu)
            im = mgcn.Model(inputs, seed)
            cp, ip = dict(cm.named_parameters()), dict(im.named_parameters())
            with torch.no_grad():
                for a, b in NAMES.items():
                    ip[b].copy_(cp[a])
            trainer = Trainer(cm, data, make_evaluator(cfg, data, cpu), cfg.train, cfg.eval.valid_metric, cfg.seed,
                              None, progress=False, device=cpu)
            opt = torch.optim.Adam([p for p in im.parameters() if p.requires_grad], lr=1e-3)
            curves = {"cliper": [], "independent": []}
            for epoch in range(1, args.epochs + 1):
                c, i = harness.lockstep_epoch(trainer, im, opt, inputs, epoch)
                curves["cliper"].append(c)
                curves["independent"].append(i)
            drift = max(float((cp[a] - ip[b]).abs().max()) for a, b in NAMES.items())
            gap = max(abs(x - y) for x, y in zip(*curves.values()))
            print(f"seed {seed}: valid R@20 cliper {[round(x, 5) for x in curves['cliper']]}", flush=True)
            print(f"seed {seed}: valid R@20 indep. {[round(x, 5) for x in curves['independent']]}", flush=True)
            print(f"seed {seed}: max |curve gap| {gap:.1e}, max |parameter gap| after {args.epochs} epochs {drift:.1e}",
                  flush=True)


if __name__ == "__main__":
    main()
