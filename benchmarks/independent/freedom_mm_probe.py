"""Issue 12's FREEDOM question: how much do the item-item graph's inputs (a stale or different
``mm_adj``, as MMRec's dataset-folder cache can hold) and the trained feature tables move the
valid curve at a fixed epoch budget? Every variant runs the same seeds for exactly ``--epochs``
epochs (no early stopping) on the same arrays, in one process; cliper's own path is one variant.

    python benchmarks/independent/freedom_mm_probe.py --dataset /tmp/sbs/demo --seeds 1 2 3 4 5

Writes ``benchmarks/results/side_by_side/freedom_mm_adj_probe_<dataset>.json``. Synthetic (svd)
features: a fidelity probe, not a result of the method.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import freedom  # noqa: E402
import harness  # noqa: E402
from results_io import RESULTS_DIR, machine  # noqa: E402

VARIANTS = {
    "cliper": None,
    "independent": {},
    "independent_train_features": {"train_features": 1},
    "mm_resampled": {"mm_source": "resampled"},
    "mm_random": {"mm_source": "random"},
    "mm_swap": {"mm_source": "swap"},
    "mm_text_only": {"mm_source": "text_only"},
    "mm_image_only": {"mm_source": "image_only"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--report", type=int, nargs="+", default=[5, 10, 25, 50])
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)
    inputs = harness.load_inputs(args.dataset, "svd", 512, 384)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            curves = []
            for seed in args.seeds:
                t0 = time.perf_counter()
                if VARIANTS[name] is None:
                    r = harness.fit_cliper("freedom", args.dataset, inputs, seed, args.epochs, Path(tmp),
                                           ["threads=1", "train.patience=100000"])
                else:
                    r = harness.fit_independent(freedom.Model, inputs, seed, args.epochs, VARIANTS[name],
                                                patience=100000)
                curves.append(r["valid_curve"])
                print(f"{name} seed {seed}: epoch {args.epochs} valid R@20 {r['valid_curve'][-1]:.4f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            out[name] = {"params": VARIANTS[name], "curves": curves}
    table = {}
    for name, v in out.items():
        a = np.array(v["curves"])
        base = np.array(out["independent"]["curves"]) if "independent" in out else None
        row = {}
        for e in args.report:
            col = a[:, e - 1]
            cell = {"mean": float(col.mean()), "se": float(col.std(ddof=1) / math.sqrt(col.size))}
            if base is not None and name != "independent":
                d = col - base[:, e - 1]  # paired by seed against the independent side, same graph
                cell["paired_diff"] = float(d.mean())
                cell["paired_se"] = float(d.std(ddof=1) / math.sqrt(d.size))
                cell["relative"] = float(d.mean() / base[:, e - 1].mean())
            row[str(e)] = cell
        table[name] = row
        print(name + ": " + "; ".join(
            f"ep{e} {c['mean']:.4f}+-{c['se']:.4f}" + (f" ({c['relative']:+.1%})" if "relative" in c else "")
            for e, c in row.items()))
    payload = {"benchmark": "freedom_mm_adj_probe", "command": "python " + " ".join(sys.argv),
               "machine": machine(1), "dataset": args.dataset, "features": "svd", "image_dim": 512, "text_dim": 384,
               "seeds": args.seeds, "epochs": args.epochs, "variants": out, "valid_recall20_at": table}
    harness.save(RESULTS_DIR / "side_by_side" / f"freedom_mm_adj_probe_{Path(args.dataset).name}.json", payload)


if __name__ == "__main__":
    main()
