"""Data-build speed: vectorised k-core vs a per-row pandas reference, and full builds per format.

Synthetic power-law log (seeded); prints seconds and the k-core speed-up ratio measured in this run.
Usage: python benchmarks/bench_data.py [--rows 1000000]
Writes benchmarks/results/data.json (``python benchmarks/render.py`` renders it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cliper.data.build import build_dataset
from cliper.data.kcore import kcore_mask
from results_io import write_result


def synthetic_log(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_users, n_items = rows // 6, rows // 25
    pu = rng.lognormal(0.0, 1.0, n_users)
    pi = rng.lognormal(0.0, 1.5, n_items)
    users = rng.choice(n_users, size=rows, p=pu / pu.sum())
    items = rng.choice(n_items, size=rows, p=pi / pi.sum())
    return pd.DataFrame(
        {
            "reviewerID": np.char.add("U", users.astype(str)),
            "asin": np.char.add("B", items.astype(str)),
            "unixReviewTime": 1_300_000_000 + rng.integers(0, 10**8, rows),
        }
    )


def kcore_groupby_reference(df: pd.DataFrame, k: int) -> int:
    """Baseline: the common pandas idiom (groupby transform('size') per round)."""
    while True:
        ok = (df.groupby("reviewerID")["asin"].transform("size") >= k) & (
            df.groupby("asin")["reviewerID"].transform("size") >= k
        )
        if ok.all():
            return len(df)
        df = df[ok]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    df = synthetic_log(args.rows).drop_duplicates(["reviewerID", "asin"])
    print(f"synthetic log: {len(df):,} distinct pairs")

    u, _ = pd.factorize(df["reviewerID"])
    i, _ = pd.factorize(df["asin"])
    t = time.perf_counter()
    res = kcore_mask(u, i, 5)
    t_vec = time.perf_counter() - t
    t = time.perf_counter()
    n_ref = kcore_groupby_reference(df, 5)
    t_ref = time.perf_counter() - t
    assert n_ref == res.n_kept
    rows = [{"step": "5-core, kcore_mask", "seconds": round(t_vec, 3),
             "detail": f"{res.n_kept:,} of {len(df):,} pairs kept, {res.rounds} rounds"},
            {"step": "5-core, pandas groupby-per-round reference", "seconds": round(t_ref, 3),
             "detail": f"kcore_mask is {t_ref / t_vec:.1f}x faster (same run)"}]
    print(f"5-core: {res.n_kept:,} pairs kept, {res.rounds} rounds; kcore_mask {t_vec:.3f}s, "
          f"groupby reference {t_ref:.3f}s, speed-up x{t_ref / t_vec:.1f}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        df.to_csv(tmp / "r.csv", index=False)
        df.to_parquet(tmp / "r.parquet")
        with open(tmp / "r.jsonl", "w") as fh:
            for rec in df.to_dict("records"):
                fh.write(json.dumps(rec) + "\n")
        for src in ("r.csv", "r.jsonl", "r.parquet"):
            for split in ("random", "temporal"):
                t = time.perf_counter()
                out = build_dataset(tmp / src, tmp / f"o_{src}_{split}", k_core=5, split=split, progress=False)
                s = out.summary
                dt = time.perf_counter() - t
                rows.append({"step": f"build_dataset from {src.split('.')[1]}, {split} split", "seconds": round(dt, 2),
                             "detail": f"{s['users']:,} users, {s['items']:,} items, "
                                       f"train/valid/test {s['train']:,}/{s['valid']:,}/{s['test']:,}"})
                print(f"build {src:10s} {split:8s}: {dt:6.2f}s  "
                      f"{s['users']:,} users {s['items']:,} items {s['train']:,}/{s['valid']:,}/{s['test']:,}")

    write_result("data", ["step", "seconds", "detail"], rows,
                 notes=f"Synthetic power-law log (seeded), {args.rows:,} rows drawn, {len(df):,} distinct pairs; "
                       "k-core 5. Build times include reading, k-core, remapping, the split and writing the files.")


if __name__ == "__main__":
    main()
