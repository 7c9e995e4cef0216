"""Bisect step for the SMORE side-by-side: cliper's own SMORE model trained by the HARNESS loop
(sampler, Adam, lr schedule 0.96 ** (epoch / 50), evaluator), early stopping off. If its valid
curve follows the independent model's, the rising-phase gap comes from cliper's Trainer/Evaluator
path; if it follows cliper's, from the model (initialisation, dropout streams).

    python benchmarks/independent/smore_bisect.py --epochs 45 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import weakref
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import harness  # noqa: E402
from results_io import RESULTS_DIR, machine  # noqa: E402

TMP = Path(tempfile.mkdtemp())
DATASET = "/tmp/sbs/demo"


class CliperInHarness(torch.nn.Module):
    def __init__(self, inputs, seed):
        super().__init__()
        from cliper.config.loader import load_config
        from cliper.training.runner import build_features, build_model, load_dataset

        feats = harness.feature_overrides(inputs, TMP)
        cfg = load_config(overrides=[f"dataset.path={DATASET}", "model.name=smore", f"seed={seed}", *feats])
        self.cm = build_model(cfg, load_dataset(cfg), build_features(cfg, inputs.n_items), torch.device("cpu"))
        self.epoch = -1
        ref, first = weakref.ref(self), self.cm.user_embedding.weight

        def hook(opt, args, kwargs):
            me = ref()
            if me is None or not any(p is first for g in opt.param_groups for p in g["params"]):
                return
            for g in opt.param_groups:
                g.setdefault("lr0", g["lr"])
                g["lr"] = g["lr0"] * 0.96 ** (max(me.epoch, 0) / 50)

        self._hook = register_optimizer_step_pre_hook(hook)

    def pre_epoch(self):
        self.epoch += 1
        self.cm.pre_epoch_hook(self.epoch)

    def loss(self, u, p, n):
        from cliper.models.base import Batch
        return self.cm.calculate_loss(Batch(u, p, n))

    def scores(self, users):
        us, it = self.cm.score_embeddings()
        return us[users] @ it.T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=45)
    args = ap.parse_args()
    torch.set_num_threads(1)
    inputs = harness.load_inputs(DATASET, "svd", 512, 384)
    rows = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        res = harness.fit_independent(CliperInHarness, inputs, seed, args.epochs, patience=10 ** 6)
        rows.append({"seed": seed, "cliper_in_harness": res})
        print(f"seed {seed}: {' '.join(f'{x:.3f}' for x in res['valid_curve'][4::5])} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
        harness.save(RESULTS_DIR / "side_by_side" / "side_by_side_smore_demo_bisect.json",
                     {"benchmark": "side_by_side_smore_demo_bisect", "command": "python " + " ".join(sys.argv),
                      "machine": machine(1), "epochs": args.epochs, "rows": rows})


if __name__ == "__main__":
    main()
