"""Bisect tools for the BM3 / LATTICE side-by-side check (docs/backbones/bm3.md, lattice.md).

    python benchmarks/independent/lockstep_bm3_lattice.py lockstep --model bm3 --epochs 10 [--train-features 1]
    python benchmarks/independent/lockstep_bm3_lattice.py init-swap --model lattice --epochs 5 --seeds 1 2 3

``lockstep``: cliper's model (built by ``cliper train``'s runner) and the independent one start from
the SAME weights (copied from cliper's) and train on the SAME harness batches, each with its own Adam
(cliper's fused, as its Trainer); torch is reseeded before each batch's loss so BM3's dropout masks are
equal (the independent BM3 then draws them per batch row, as cliper). Prints both valid R@20 per
epoch; exits 1 if they ever differ by more than 2e-3 (float rounding - fused vs plain Adam, and
LATTICE's last-batch L2 divisor, the actual batch in cliper and 2048 in MMRec - can flip a user or two
at the top-20 boundary after some 25 epochs; before that they agree to 5 decimals). ``init-swap``: the independent model in the
harness loop from its own initialisation and from cliper's initialisation for the same seed (mean
valid curve over the seeds): separates "different code" from "different initial draws".
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402


def cliper_model(name: str, dataset: str, inputs, seed: int, workdir: Path, overrides: list[str]):
    from cliper.config.loader import load_config
    from cliper.training.runner import build_features, build_model, load_dataset

    feats = harness.feature_overrides(inputs, workdir)
    cfg = load_config(overrides=[f"dataset.path={dataset}", f"model.name={name}", f"seed={seed}", *feats, *overrides])
    data = load_dataset(cfg)
    return build_model(cfg, data, build_features(cfg, data.n_items), torch.device("cpu"))


@torch.no_grad()
def copy_init(name: str, cm, im) -> None:
    """cliper's initial weights into the independent model (the tables, projections, predictor)."""
    im.user.copy_(cm.user_embedding.weight)
    im.item.copy_(cm.item_embedding.weight)
    for m in im.proj:
        im.proj[m].load_state_dict(cm.projections[m].state_dict())
    if name == "bm3":
        im.predictor.load_state_dict(cm.predictor.state_dict())
    else:
        im.modal_weight.copy_(cm.modal_weight)


def lockstep(args, inputs, workdir: Path) -> int:
    from cliper.models.base import Batch

    mod = importlib.import_module(args.model)
    tf = int(args.train_features)
    cm = cliper_model(args.model, args.dataset, inputs, args.seed, workdir,
                      [f"model.train_features={'true' if tf else 'false'}"])
    extra = {"row_dropout": 1} if args.model == "bm3" else {}
    im = mod.Model(inputs, args.seed, train_features=tf, **extra)
    copy_init(args.model, cm, im)
    oc = torch.optim.Adam([p for p in cm.parameters() if p.requires_grad], lr=1e-3, fused=True)
    oi = torch.optim.Adam([p for p in im.parameters() if p.requires_grad], lr=1e-3)
    scheds = []
    if hasattr(im, "lr_lambda"):  # LATTICE: MMRec's LambdaLR on both (cliper's Trainer runs the same formula)
        scheds = [torch.optim.lr_scheduler.LambdaLR(o, im.lr_lambda) for o in (oc, oi)]
    sampler = harness.ReferenceSampler(inputs.train, np.random.default_rng(args.seed))
    worst = 0.0
    for ep in range(1, args.epochs + 1):
        cm.train()
        im.train()
        cm.pre_epoch_hook(ep)
        im.pre_epoch()
        for k, (u, p, n) in enumerate(sampler.epoch(2048)):
            oc.zero_grad()
            oi.zero_grad()
            torch.manual_seed(100_000 * ep + k)
            cm.calculate_loss(Batch(u, p, n)).backward()
            torch.manual_seed(100_000 * ep + k)
            im.loss(u, p, n).backward()
            oc.step()
            oi.step()
        for sch in scheds:
            sch.step()
        a = harness.evaluate(harness.CliperScores(cm), inputs, "valid")["recall@20"]
        b = harness.evaluate(im, inputs, "valid")["recall@20"]
        worst = max(worst, abs(a - b))
        print(f"epoch {ep}: valid R@20 cliper {a:.5f} independent {b:.5f}", flush=True)
    print(f"largest |difference| {worst:.2e}")
    return int(worst > 2e-3)


def init_swap(args, inputs, workdir: Path) -> int:
    mod = importlib.import_module(args.model)
    mode = {"v": "own"}

    class Swapped(mod.Model):
        def __init__(self, inputs, seed, **kw):
            super().__init__(inputs, seed, **kw)
            if mode["v"] == "cliper":
                copy_init(args.model, cliper_model(args.model, args.dataset, inputs, seed, workdir, []), self)
                torch.manual_seed(seed + 777)  # the training draws restart from a fixed point either way
            else:
                torch.manual_seed(seed + 777)

    for mode["v"] in ("own", "cliper"):
        curves = np.array([harness.fit_independent(Swapped, inputs, s, args.epochs)["valid_curve"][: args.epochs]
                           for s in args.seeds])
        print(f"{mode['v']:6s} init, mean valid R@20 by epoch: " + " ".join(f"{x:.4f}" for x in curves.mean(0)),
              flush=True)
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["lockstep", "init-swap"])
    ap.add_argument("--model", choices=["bm3", "lattice"], required=True)
    ap.add_argument("--dataset", default="/tmp/sbs/demo")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--train-features", type=int, choices=[0, 1], default=None,
                    help="lockstep: 0 frozen / 1 trained tables (default: the model's cliper default)")
    args = ap.parse_args()
    if args.train_features is None:
        args.train_features = 1 if args.model == "lattice" else 0
    torch.set_num_threads(1)
    inputs = harness.load_inputs(args.dataset, "svd", 512, 384)
    with tempfile.TemporaryDirectory() as tmp:
        rc = (lockstep if args.mode == "lockstep" else init_swap)(args, inputs, Path(tmp))
    sys.exit(rc)


if __name__ == "__main__":
    main()
