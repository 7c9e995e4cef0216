"""Time ``cliper quickstart`` (the offline demo) and record what it reports.

Runs the whole chain in a fresh folder, in this process, exactly as the command does
(``cliper.experiments.quickstart.run_quickstart`` with the command's defaults unless
options are given): synthetic catalogue, CLIP from scratch, multi-view extraction,
vanilla vs CLIPER training of each backbone, view importance, report.

Writes benchmarks/results/quickstart.json (stage wall times) and
quickstart_results.json (test R@20 / N@20 of vanilla and CLIPER features, the Wilcoxon
p-value over users, and the CLIP's held-out retrieval); ``python benchmarks/render.py``
renders them. Every figure is about a SYNTHETIC catalogue.

    python benchmarks/bench_quickstart.py            # the defaults of `cliper quickstart`
    python benchmarks/bench_quickstart.py --items 300 --users 400 --clip-epochs 5 --epochs 20
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

from results_io import write_result

from cliper.experiments.quickstart import QuickstartOptions, run_quickstart


def main() -> None:
    d = QuickstartOptions()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=d.n_items)
    ap.add_argument("--users", type=int, default=d.n_users)
    ap.add_argument("--clip-epochs", type=int, default=d.clip_epochs)
    ap.add_argument("--epochs", type=int, default=d.epochs)
    ap.add_argument("-b", "--backbones", default=",".join(d.backbones))
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args()
    opts = QuickstartOptions(n_items=args.items, n_users=args.users, clip_epochs=args.clip_epochs, epochs=args.epochs,
                             backbones=tuple(args.backbones.split(",")))
    tmp = None
    if args.out:
        out = Path(args.out)
        shutil.rmtree(out, ignore_errors=True)
    else:
        tmp = tempfile.mkdtemp(prefix="cliper-bench-qs-")
        out = Path(tmp) / "qs"
    try:
        t = time.perf_counter()
        report = run_quickstart(out, opts, progress=False)
        total = time.perf_counter() - t
        doc = json.loads((report / "report.json").read_text())
        with open(out / "compare" / "compare.csv", newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r["k"] == "20"]
        arms_csv = out / "compare" / "arms.csv"  # the MiniLM-text arm, when the minilm extra is installed
        minilm = {}
        if arms_csv.is_file():
            with open(arms_csv, newline="", encoding="utf-8") as fh:
                minilm = {r["backbone"]: r for r in csv.DictReader(fh) if r["arm"] == "minilm"}
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    stages = [{"stage": k, "seconds": v} for k, v in doc["timings_s"].items()]
    stages.append({"stage": "total", "seconds": round(total, 1)})
    for r in stages:
        print(f"{r['stage']:10s} {r['seconds']:7.1f} s")
    synthetic = ("SYNTHETIC demo catalogue: the figures show that the chain works end to end, not how CLIPER "
                 "performs on real catalogues.")
    write_result("quickstart", ["stage", "seconds"], stages, threads=opts.threads, notes=(
        f"cliper quickstart with {args.items} items, {args.users} users, {args.clip_epochs} CLIP epochs, "
        f"backbones {args.backbones}, at most {args.epochs} epochs (patience {opts.patience}), "
        f"{opts.threads} torch thread. " + synthetic))

    results = []
    for r in rows:
        results.append({
            "backbone": r["backbone"], "metric": f"{r['metric']}@20",
            "MiniLM text": (round(float(minilm[r["backbone"]][f"{r['metric']}@20_mean"]), 4)
                            if r["backbone"] in minilm else None),
            "vanilla": round(float(r["baseline_mean"]), 4), "CLIPER": round(float(r["treatment_mean"]), 4),
            "improvement %": round(float(r["improvement_pct"]), 1),
            "Wilcoxon p (users)": float(f"{float(r['p_users_wilcoxon']):.3g}"),
        })
        print(results[-1])
    held = doc["clip"]["held_out"]
    clip = (f"The CLIP (best epoch {doc['clip']['best_epoch']}) reaches held-out image-to-title Recall@5 "
            f"{held['title_i2t_R@5']:.3f} (chance {held['title_chance_R@5']:.3f}).")
    cov = doc["features"].get("text_coverage") or {}
    cut = ", ".join(f"{v} {c['over_limit']:.0%} (kept {c['kept_fraction']:.0%})"
                    for v, c in (cov.get("views") or {}).items() if c)
    seen = (f" Text the CLIP saw ({cov['window_tokens']}-token window, share of items over it, mean tokens kept): "
            f"{cut}." if cut else "")
    write_result("quickstart_results", ["backbone", "metric", "MiniLM text", "vanilla", "CLIPER", "improvement %",
                                        "Wilcoxon p (users)"], results, threads=opts.threads, notes=(
        "Test metrics at the best valid epoch, one seed; MiniLM text = image + all-MiniLM-L6-v2 on the joined "
        "fields (MMRec's text), vanilla = image + the single CLIP global view, CLIPER = image + all views fused "
        "by similarity attention (tau 0.1); the same CLIP image vector, embedding size and budget in every arm; "
        "improvement and p: CLIPER vs vanilla." + seen + " " + clip + " " + synthetic))


if __name__ == "__main__":
    main()
