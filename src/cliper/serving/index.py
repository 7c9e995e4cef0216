"""Maximum-inner-product retrieval: exact (numpy) or approximate (faiss IVF / HNSW).

Every index answers ``search(query [d], k, exclude) -> (rows, scores)`` best first.
Exact search ranks like the evaluator (train items excluded, highest score first);
equal scores are ordered by item row, lowest first. A faiss index over-fetches by the
number of excluded items and drops them, so exclusion never costs recall.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from cliper.extras import require

EMPTY = np.zeros(0, dtype=np.int64)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` highest finite scores, best first, ties by lowest row (``scores`` is not modified)."""
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return EMPTY
    if k < n:
        threshold = np.partition(scores, n - k)[n - k]  # the k-th highest score (values only: cheaper than argpartition)
        cand = np.flatnonzero(scores >= threshold)  # k rows, more when the k-th score is tied
    else:
        cand = np.arange(n)
    order = np.lexsort((cand, -scores[cand]))[:k]
    rows = cand[order]
    return rows[np.isfinite(scores[rows])]


class ExactIndex:
    """Brute-force inner products over a float32 matrix: O(I d) per query, exact."""

    kind = "exact"

    def __init__(self, items: np.ndarray):
        self.items = np.ascontiguousarray(items, dtype=np.float32)

    def scores(self, query: np.ndarray) -> np.ndarray:
        return self.items @ np.asarray(query, dtype=np.float32)

    def search(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        s = self.scores(query)
        if exclude is not None and exclude.size:
            s[exclude] = -np.inf
        rows = top_k(s, k)
        return rows, s[rows]


class FaissIndex:
    """A faiss index (IVF or HNSW, inner product) read from a verified bundle file."""

    def __init__(self, index, kind: str, n_items: int, params: dict[str, Any]):
        self.index = index
        self.kind = kind
        self.n_items = n_items
        _apply_params(index, kind, params)

    @classmethod
    def read(cls, path: Path, doc: dict[str, Any], n_items: int) -> "FaissIndex":
        faiss = require("faiss", "faiss", f"the bundle's {doc.get('kind')} index")

        faiss.omp_set_num_threads(1)  # one query per request: parallelism comes from concurrent requests
        data = np.fromfile(path, dtype=np.uint8)
        index = faiss.deserialize_index(data)
        if index.ntotal != n_items:
            raise ValueError(f"faiss index holds {index.ntotal} items, the bundle {n_items}")
        return cls(index, doc["kind"], n_items, doc.get("params", {}))

    def search(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        n_ex = 0 if exclude is None else int(exclude.size)
        want = min(k + n_ex, self.n_items)
        if want <= 0:
            return EMPTY, np.zeros(0, np.float32)
        q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
        dist, rows = self.index.search(q, want)
        rows, dist = rows[0], dist[0]
        keep = rows >= 0
        if n_ex:
            keep &= ~np.isin(rows, exclude)
        rows, dist = rows[keep][:k], dist[keep][:k]
        order = np.lexsort((rows, -dist))
        return rows[order].astype(np.int64), dist[order]


def _apply_params(index, kind: str, params: dict[str, Any]) -> None:
    import faiss

    if kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = int(params.get("nprobe", 8))
    elif kind == "hnsw":
        index.hnsw.efSearch = int(params.get("ef_search", 64))


def recall_at_k(exact: ExactIndex | list[set[int]], approx, queries: np.ndarray, excludes: list[np.ndarray],
                k: int) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / |exact top-k| (``exact``: an index or its answers)."""
    truths = exact if isinstance(exact, list) else exact_answers(exact, queries, excludes, k)
    hits, total = 0, 0
    for truth, q, ex in zip(truths, queries, excludes):
        got = set(approx.search(q, k, ex)[0].tolist())
        hits += len(truth & got)
        total += len(truth)
    return hits / max(total, 1)


def exact_answers(exact: ExactIndex, queries: np.ndarray, excludes: list[np.ndarray], k: int) -> list[set[int]]:
    return [set(exact.search(q, k, ex)[0].tolist()) for q, ex in zip(queries, excludes)]


def build_faiss_index(items: np.ndarray, users: np.ndarray, seen_indptr: np.ndarray, seen_indices: np.ndarray,
                      kind: str, path: Path, k: int = 20, target_recall: float = 0.95, n_queries: int = 200,
                      nlist: int | None = None, hnsw_m: int = 32, seed: int = 0, threads: int | None = None) -> dict:
    """Build a faiss index over ``items``, tune its search effort until recall@k against exact
    search over ``n_queries`` sampled users reaches ``target_recall``, and save it to ``path``.

    Returns the manifest entry: kind, build and search parameters, and the measured recall.
    """
    faiss = require("faiss", "faiss", f"a {kind} index")

    if kind not in ("ivf", "hnsw"):
        raise ValueError(f"unknown index kind {kind!r}; choose exact, ivf or hnsw")
    if threads:
        faiss.omp_set_num_threads(int(threads))
    t0 = time.perf_counter()
    n, d = items.shape
    rng = np.random.default_rng(seed)
    x = np.ascontiguousarray(items, dtype=np.float32)
    if kind == "ivf":
        nlist = int(nlist or max(1, min(4 * int(np.sqrt(n)), n // 39 or 1)))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10  # k-means iterations: enough for coarse cells, bounded build time
        train = x if n <= 40 * nlist else x[rng.choice(n, 40 * nlist, replace=False)]
        index.train(train)
        index.add(x)
        build = {"nlist": nlist}
        ladder = [("nprobe", p) for p in (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048)
                  if p <= nlist] or [("nprobe", nlist)]
    else:
        index = faiss.IndexHNSWFlat(d, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(x)
        build = {"m": int(hnsw_m), "ef_construction": 80}
        ladder = [("ef_search", e) for e in (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)]
    build_s = time.perf_counter() - t0
    sample = rng.choice(users.shape[0], size=min(n_queries, users.shape[0]), replace=False)
    queries = users[sample]
    excludes = [seen_indices[seen_indptr[u]:seen_indptr[u + 1]] for u in sample]
    truths = exact_answers(ExactIndex(x), queries, excludes, k)  # once, not per tried setting
    tried = []
    params: dict[str, Any] = {}
    recall = 0.0
    for name, value in ladder:
        params = {name: value}
        recall = recall_at_k(truths, FaissIndex(index, kind, n, params), queries, excludes, k)
        tried.append({name: value, "recall": round(recall, 4)})
        if recall >= target_recall:
            break
    faiss.omp_set_num_threads(1)
    t1 = time.perf_counter()
    lat = FaissIndex(index, kind, n, params)
    for q, ex in zip(queries[:50], excludes[:50]):
        lat.search(q, k, ex)
    per_query_ms = (time.perf_counter() - t1) / max(min(50, len(queries)), 1) * 1e3
    faiss.serialize_index(index).tofile(str(path))
    return {
        "kind": kind,
        "build": build,
        "params": params,
        "recall": {"k": k, "value": round(recall, 4), "target": target_recall, "queries": int(len(sample)),
                   "against": "exact inner-product search, seen items excluded", "tried": tried},
        "build_seconds": round(build_s, 2),
        "query_ms_single_thread": round(per_query_ms, 3),
    }
