"""Time, peak memory and recall@k of building a k-NN item graph for many items (default 1M x 512).

The features are GENERATED, seeded, with cluster structure like real embeddings: a
mixture of ``--clusters`` Gaussians whose centres lie on the unit sphere, each point
spread inside a random 64-d subspace (low intrinsic dimension, as CLIP embeddings have)
plus small isotropic noise, then L2-normalised. Uniform noise would make every
neighbour almost equally far and no index (nor real data) behaves like that.

The graph is built by the library path the models use (``knn_graph_result``: search,
shared float64 re-scoring, sparse normalised graph) with the configured backend
(default ``auto``: torch below ``graph.knn_approx_min_items``, faiss IVF from there).
Its recall@k is measured by the library on ``--recall-rows`` seeded rows against exact
search (self excluded). The baseline is exact torch search: its time on those rows,
measured in the same run, is scaled to all rows to give the ``x exact`` speed-up.
Peak memory is the process's peak resident set size (``ru_maxrss``), data included.

    python benchmarks/bench_knn.py --items 1000000 --dim 512 --threads 1
    python benchmarks/bench_knn.py --items 100000 --spread 1.5 --name knn_100k_spread1.5
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def clustered_features(n: int, d: int, clusters: int, seed: int = 0, subspace: int = 64,
                       spread: float = 1.0, noise: float = 0.05, chunk: int = 65536) -> np.ndarray:
    """Seeded Gaussian mixture on the sphere, spread in a random low-dimensional subspace (see module doc)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # rows of norm ~1, and an offset g @ basis of norm ~1 for g ~ N(0, I / subspace)
    basis = rng.standard_normal((subspace, d)).astype(np.float32) / np.sqrt(d)
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        x = centres[rng.integers(0, clusters, m)]
        x += (spread / np.sqrt(subspace)) * (rng.standard_normal((m, subspace), dtype=np.float32) @ basis)
        x += (noise / np.sqrt(d)) * rng.standard_normal((m, d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:s + m] = x
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=None, help="mixture components (default: items / 500)")
    ap.add_argument("--spread", type=float, default=1.0, help="spread around a centre (larger: harder neighbours)")
    ap.add_argument("--backend", default="auto", help="auto, torch, faiss-exact, faiss-ivf, faiss-hnsw")
    ap.add_argument("--approx-min-items", type=int, default=100_000)
    ap.add_argument("--nlist", type=int, default=None)
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=40)
    ap.add_argument("--ef-search", type=int, default=128)
    ap.add_argument("--recall-rows", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="torch and faiss threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="knn", help="result name: benchmarks/results/<name>.json")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)  # faiss follows torch's thread count (cliper.graphs.knn_search)
    from cliper.graphs.knn import knn_graph_result
    from cliper.graphs.knn_search import KnnSearch, _inverse_norms, _torch_candidates, default_chunk_size

    clusters = args.clusters or max(1, args.items // 500)
    t = time.perf_counter()
    x = clustered_features(args.items, args.dim, clusters, args.seed, spread=args.spread)
    gen_s = time.perf_counter() - t
    data_rss = _rss_gib()
    search = KnnSearch(backend=args.backend, approx_min_items=args.approx_min_items, ivf_nlist=args.nlist,
                       ivf_nprobe=args.nprobe, hnsw_m=args.hnsw_m, hnsw_ef_construction=args.ef_construction,
                       hnsw_ef_search=args.ef_search, recall_sample=args.recall_rows, seed=args.seed)
    print(f"{args.items} x {args.dim} features ({clusters} clusters) generated in {gen_s:.1f} s; "
          f"backend {search.resolve(args.items)}; threads {args.threads}", flush=True)
    t, cpu = time.perf_counter(), time.process_time()
    graph, res = knn_graph_result(x, args.k, weighted=True, normalization="sym", search=search)
    total_s, cpu_s = time.perf_counter() - t, time.process_time() - cpu
    peak = _rss_gib()

    # baseline, same run: exact torch search of the same number of rows, scaled to all rows
    xt = torch.from_numpy(x)
    rows = torch.from_numpy(np.sort(np.random.default_rng(args.seed + 1).choice(
        args.items, size=min(args.items, args.recall_rows), replace=False)))
    t = time.perf_counter()
    _torch_candidates(xt, _inverse_norms(xt), rows, args.k + 3, default_chunk_size(args.items))
    exact_rows_s = time.perf_counter() - t
    exact_all_s = exact_rows_s * args.items / rows.numel()

    load = [round(v, 2) for v in os.getloadavg()]
    row = {
        "items": args.items, "dim": args.dim, "k": args.k, "clusters": clusters, "spread": args.spread, "backend": res.backend,
        **{f"index_{k}": v for k, v in res.params.items() if k != "backend"},
        "threads": args.threads, "search_s": round(res.seconds, 1), "total_s": round(total_s, 1),
        "total_cpu_s": round(cpu_s, 1),
        "peak_rss_gib": round(peak, 2), "data_rss_gib": round(data_rss, 2),
        "recall@k": None if res.recall is None else round(res.recall, 4), "recall_rows": res.recall_rows,
        "exact_torch_projected_s": round(exact_all_s, 1),
        "x_exact": round(exact_all_s / res.seconds, 1), "nnz": int(graph.nnz), "loadavg": load,
    }
    print(f"search {res.seconds:.1f} s, total with graph + recall check {total_s:.1f} s ({cpu_s:.1f} s CPU), "
          f"peak RSS {peak:.2f} GiB (data alone {data_rss:.2f} GiB)")
    print(f"recall@{args.k} {row['recall@k']} on {res.recall_rows} rows vs exact search (self excluded)")
    print(f"exact torch search, same run: {exact_rows_s:.1f} s for {rows.numel()} rows -> {exact_all_s:.0f} s "
          f"projected for all rows; {res.backend} is {row['x_exact']}x faster; threads {args.threads}; "
          f"load average {load}")
    if not args.no_write:
        notes = (f"Generated seeded clustered features (Gaussian mixture on the sphere, {clusters} clusters, 64-d "
                 f"subspace spread {args.spread}); recall@k against exact search on a seeded row sample, self excluded; "
                 "x_exact = projected exact torch search time (measured on the sample rows in the same run) / search time; "
                 "peak_rss_gib = ru_maxrss of the process, data included.")
        path = write_result(args.name, list(row), [row], notes, threads=args.threads)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
