"""Model quality on the real Amazon graphs: train to early stopping, record test metrics.

Each (dataset, model) is one ``cliper train`` run with the packaged defaults
(64-d, Adam 1e-3, batch 2048, early stopping on valid Recall@20 with patience 20,
seed 2024), trained in a subprocess of the real CLI; the test metrics are those of
the best valid epoch, read from the run's ``metrics.json``. ID-only models need no
features; multimodal models get seeded random features unless ``-o features...`` says
otherwise (random features carry no content: such rows check that a backbone trains,
not what CLIPER achieves).

Writes benchmarks/results/quality.json (``python benchmarks/render.py`` renders it).

    python benchmarks/bench_quality.py --runs baby:lightgcn,baby:bpr,sports:lightgcn --threads 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_result

DATASETS = {"baby": "amazon-baby", "sports": "amazon-sports"}
# test R@20 / N@20 published for the MMRec split (the figures the brief quotes); None: not published
PUBLISHED = {
    ("baby", "lightgcn"): (0.0754, 0.0328),
    ("baby", "bpr"): (0.0575, 0.0249),
    ("sports", "lightgcn"): (0.0864, None),
}
MULTIMODAL_RANDOM = ["-o", "features.random_image_dim=4096", "-o", "features.random_text_dim=384"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="baby:lightgcn,baby:bpr", help="comma-separated dataset:model pairs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--override", action="append", default=[], help="extra config override for every run")
    ap.add_argument("--name", default="quality", help="result name (benchmarks/results/<name>.json)")
    args = ap.parse_args()

    from cliper.models import get_model_class
    from cliper.paths import shared_dataset

    rows = []
    for pair in args.runs.split(","):
        ds, model = pair.split(":")
        path = shared_dataset(DATASETS[ds])
        if path is None:
            print(f"skipping {pair}: shared data {DATASETS[ds]} not found")
            continue
        extra = [] if not get_model_class(model).modalities else MULTIMODAL_RANDOM
        with tempfile.TemporaryDirectory(prefix="cliper-quality-") as tmp:
            run = Path(tmp) / "run"
            cmd = ["cliper", "train", "-d", str(path), "-m", model, "--output", str(run), "-q",
                   "-o", f"threads={args.threads}", *extra]
            for o in args.override:
                cmd += ["-o", o]
            print("...", " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "from cliper.cli.main import main; main()", *cmd[1:]], check=True)
            wall = time.perf_counter() - t
            m = json.loads((run / "metrics.json").read_text())
            epochs = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines() if line.strip()]
        pub = PUBLISHED.get((ds, model), (None, None))
        r20, n20 = m["test"]["recall@20"], m["test"]["ndcg@20"]
        rows.append({
            "command": " ".join(shlex.quote(c) for c in cmd[:7]) + " ...", "dataset": ds, "model": model,
            "best epoch": m["best_epoch"], "epochs run": len(epochs), "wall s": round(wall, 1),
            "test R@20": round(r20, 4), "test N@20": round(n20, 4),
            "published R@20": pub[0], "published N@20": pub[1],
            "R@20 vs published %": round(100 * (r20 - pub[0]) / pub[0], 1) if pub[0] else None,
        })
        print(rows[-1])
    if not rows:
        sys.exit("nothing measured: no result written (an existing result file is kept)")
    write_result(args.name, ["dataset", "model", "best epoch", "epochs run", "wall s", "test R@20", "test N@20",
                             "published R@20", "published N@20", "R@20 vs published %"], rows, threads=args.threads,
                 notes=("Packaged default config per model, seed 2024, early stopping on valid Recall@20 (patience "
                        "20), test metrics at the best valid epoch, on the shared split in ../shared/data (the "
                        "LATTICE toolbox's random per-user split of MMRec's pairs). Published figures are for the "
                        "MMRec split, as quoted in the project brief. Multimodal rows (if any) use seeded random "
                        "features (4096-d image, 384-d text) and say nothing about CLIPER."))


if __name__ == "__main__":
    main()
