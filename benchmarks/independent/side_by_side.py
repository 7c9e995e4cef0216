"""Run a cliper backbone and its independent implementation side by side on identical inputs.

    python benchmarks/independent/side_by_side.py --model freedom --dataset DIR --seeds 1 2 3 --epochs 200

Both sides train to MMRec's early stopping (or ``--epochs``) from the same split and the same
feature arrays (see ``harness.py``), one seed after the other; the result, with both valid curves
per seed, the test Recall/NDCG@20 at each side's best valid epoch, their means +- standard error
and whether the gap is within two standard errors, goes to
``benchmarks/results/side_by_side/<name>.json``; a run of one side (``--sides cliper``) keeps its rows
in ``<name>.<side>.json``, beside any finished comparison of the same name. Independent models live in
``benchmarks/independent/<model>.py`` (class ``Model``); they never import cliper's models.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import harness  # noqa: E402
from results_io import RESULTS_DIR, machine  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="cliper model name; benchmarks/independent/<model>.py")
    ap.add_argument("--dataset", required=True, help="a folder with an MMRec .inter split")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=200, help="at most this many epochs (both stop early as MMRec)")
    ap.add_argument("--features", choices=["svd", "random"], default="svd")
    ap.add_argument("--image-dim", type=int, default=4096)
    ap.add_argument("--text-dim", type=int, default=384)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sides", default="cliper,independent")
    ap.add_argument("-o", "--override", action="append", default=[], help="cliper config override")
    ap.add_argument("-p", "--param", action="append", default=[], help="independent model param KEY=VALUE")
    ap.add_argument("--name", help="result name (default side_by_side_<model>_<dataset folder>)")
    ap.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where side_by_side/<name>.json goes")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    out_dir = args.results_dir / "side_by_side"

    import torch
    torch.set_num_threads(args.threads)
    os.environ.setdefault("CLIPER_THREADS", str(args.threads))
    inputs = harness.load_inputs(args.dataset, args.features, args.image_dim, args.text_dim)
    sides = args.sides.split(",")
    module = importlib.import_module(args.model) if "independent" in sides else None
    defaults = getattr(module, "DEFAULTS", {})
    params = {}
    for kv in args.param:  # typed by the model's DEFAULTS (float when it has none)
        k, v = kv.split("=", 1)
        params[k] = type(defaults.get(k, 0.0))(v)
    name = args.name or f"side_by_side_{args.model}_{Path(args.dataset).name}"
    log = print if args.verbose else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            row = {"seed": seed}
            if "cliper" in sides:
                t0 = time.perf_counter()
                row["cliper"] = harness.fit_cliper(args.model, args.dataset, inputs, seed, args.epochs,
                                                   Path(tmp), [f"threads={args.threads}", *args.override])
                print(f"seed {seed} cliper: best epoch {row['cliper']['best_epoch']}, "
                      f"test R@20 {row['cliper']['test']['recall@20']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
            if "independent" in sides:
                t0 = time.perf_counter()
                row["independent"] = harness.fit_independent(module.Model, inputs, seed, args.epochs, params, log=log)
                print(f"seed {seed} independent: best epoch {row['independent']['best_epoch']}, "
                      f"test R@20 {row['independent']['test']['recall@20']:.4f} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
            rows.append(row)
            if len(sides) == 2:
                harness.save(out_dir / f"{name}.partial.json", {"rows": rows})
    payload = {"benchmark": name, "command": "python " + " ".join(sys.argv), "machine": machine(args.threads),
               "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
               "model": args.model, "dataset": str(args.dataset), "features": args.features,
               "image_dim": args.image_dim, "text_dim": args.text_dim, "overrides": args.override,
               "independent_params": params, "rows": rows}
    if len(sides) == 2:
        payload["summary"] = {m: harness.compare(rows, m) for m in ("recall@20", "ndcg@20")}
        s = payload["summary"]["recall@20"]
        print(f"{args.model}: test R@20 cliper {s['cliper'][0]:.4f} +- {s['cliper'][1]:.4f}, independent "
              f"{s['independent'][0]:.4f} +- {s['independent'][1]:.4f}, relative {s['relative']:+.1%}, "
              f"within 2 SE: {s['within_2se']}")
        harness.save(out_dir / f"{name}.json", payload)
        (out_dir / f"{name}.partial.json").unlink(missing_ok=True)
    else:  # one side: its rows under their own name, never over a finished comparison (no summary: not rendered)
        harness.save(out_dir / f"{name}.{'+'.join(sides)}.json", payload)


if __name__ == "__main__":
    main()
