"""Cosine kNN item-item graphs from feature matrices, built in row chunks and cached by content.

LATTICE (Zhang et al., ACM MM 2021, Sec. 3.1, Eq. 1-3) and FREEDOM (Zhou & Shen, ACM MM
2023, Sec. 3.1) connect each item to its k most similar items by cosine similarity of a
modality's features and normalise the result as D^-1/2 S D^-1/2 (D = row sums). The
reference toolbox built the full N x N similarity matrix; here each chunk of rows is
compared with all items (a ``chunk x N`` block), only its top-k survive, and the graph
is returned as a scipy sparse matrix with N*k entries, so memory stays O(chunk*N + N*k).
For large catalogues the neighbours come from faiss instead (exact or approximate, with
the recall measured on a sample): see :mod:`cliper.graphs.knn_search` and
docs/item-graphs.md.

Built graphs are cached on disk under a key made from a hash of the feature CONTENT and
every parameter that shapes the graph (k, weighting, normalisation, self-loops,
modality, N, the resolved search backend and its index parameters): the reference toolbox keyed its cache by k alone and silently reused a
graph built from other features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from cliper.graphs.adjacency import sym_normalize
from cliper.graphs.knn_search import KnnResult, KnnSearch, as_float_tensor, default_chunk_size, search_knn

__all__ = ["KnnGraphCache", "KnnSearch", "cached_knn_graph", "default_chunk_size", "graph_from_neighbours",
           "hash_array", "knn_graph", "topk_cosine"]

log = logging.getLogger(__name__)

Normalization = Literal["sym", "none"]
CACHE_VERSION = 3  # 2: float64 re-scoring, index-ordered ties, search backend in the key; 3: float32 ties at the candidate boundary keep the smaller index (zero rows, duplicates); bump when the construction changes, so old cache files are never reused


_as_float_tensor = as_float_tensor


@torch.no_grad()
def topk_cosine(
    features,
    k: int,
    chunk_size: int | None = None,
    include_self: bool = True,
    search: KnnSearch | None = None,
    with_values: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Top-k cosine neighbours of every row: (values [N, k], indices [N, k]), best first.

    Exact torch search in row chunks unless ``search`` selects another backend
    (:mod:`cliper.graphs.knn_search`); ties keep the smaller item index. A zero row has
    similarity 0 to everything. ``include_self=True`` keeps the item itself first among
    its neighbours, as LATTICE's and FREEDOM's dense ``topk`` over ``X X^T`` did.
    ``with_values=False``: values None, the same indices with less float64 re-scoring.
    """
    res = search_knn(features, k, include_self, search or KnnSearch(backend="torch"), chunk_size, with_values)
    return res.values, res.indices


def knn_graph(
    features,
    k: int = 10,
    weighted: bool = True,
    normalization: Normalization = "sym",
    chunk_size: int | None = None,
    include_self: bool = True,
    search: KnnSearch | None = None,
) -> sp.csr_matrix:
    """The kNN graph as an N x N CSR matrix (row i holds item i's k neighbours).

    Args:
        weighted: keep the cosine similarities as edge weights (LATTICE) or use 1 (FREEDOM).
        normalization: ``"sym"`` for D^-1/2 S D^-1/2 with D the row sums (both papers), or ``"none"``.
        search: the neighbour search backend (default: exact torch search).
    """
    return knn_graph_result(features, k, weighted, normalization, chunk_size, include_self, search)[0]


def knn_graph_result(features, k: int = 10, weighted: bool = True, normalization: Normalization = "sym",
                     chunk_size: int | None = None, include_self: bool = True,
                     search: KnnSearch | None = None) -> tuple[sp.csr_matrix, KnnResult]:
    """:func:`knn_graph` plus how its neighbours were found (backend, seconds, recall)."""
    res = search_knn(features, k, include_self, search or KnnSearch(backend="torch"), chunk_size)
    return graph_from_neighbours(res.values, res.indices, weighted, normalization), res


def graph_from_neighbours(values: torch.Tensor, indices: torch.Tensor, weighted: bool = True,
                          normalization: Normalization = "sym") -> sp.csr_matrix:
    """The N x N kNN graph of neighbour lists ``values`` / ``indices`` [N, k] (as :func:`knn_graph`).

    Separate from the search so a model can keep only the lists (in its checkpoint) and
    rebuild the very same graph from them."""
    n, kk = indices.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), kk)
    data = values.cpu().numpy().ravel() if weighted else np.ones(n * kk, dtype=np.float32)
    graph = sp.csr_matrix((data.astype(np.float32), (rows, indices.cpu().numpy().ravel())), shape=(n, n))
    graph.sum_duplicates()
    graph.sort_indices()
    if normalization == "sym":
        return sym_normalize(graph)
    if normalization == "none":
        return graph
    raise ValueError(f"unknown normalization {normalization!r}; use 'sym' or 'none'")


def hash_array(features) -> str:
    """Content hash of a feature matrix (shape, dtype and bytes)."""
    x = _as_float_tensor(features).cpu().contiguous().numpy()
    h = hashlib.sha256(f"{x.shape}{x.dtype}".encode())
    h.update(x.tobytes())
    return h.hexdigest()[:16]


def knn_cache_key(
    content_hash: str,
    n_items: int,
    k: int,
    weighted: bool,
    normalization: str,
    modality: str,
    include_self: bool = True,
    search: dict | None = None,
) -> str:
    """Hash of everything that shapes a kNN graph (never k alone), the search backend included."""
    spec = {
        "search": search or {"backend": "torch"},
        "version": CACHE_VERSION,
        "content": content_hash,
        "n": int(n_items),
        "k": int(k),
        "weighted": bool(weighted),
        "normalization": normalization,
        "modality": modality,
        "include_self": bool(include_self),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def knn_cache_path(cache_dir: Path, modality: str, k: int, key: str) -> Path:
    return Path(cache_dir) / "knn" / f"{modality}-k{k}-{key}.npz"


def _save_atomic(matrix: sp.csr_matrix, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        sp.save_npz(tmp, matrix, compressed=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def info_path(path: Path) -> Path:
    """The JSON next to a cached graph: backend, build seconds and (approximate backends) recall."""
    return Path(path).with_suffix(".json")


def _write_info(path: Path, info: dict) -> None:
    tmp = info_path(path).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=1), encoding="utf-8")
    os.replace(tmp, info_path(path))


def _read_info(path: Path) -> dict | None:
    try:
        return json.loads(info_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class KnnGraphCache:
    """Builds kNN graphs, reusing ``cache_dir/knn/<modality>-k<k>-<key>.npz`` when present.

    ``search`` picks the neighbour search backend (default ``auto``: torch below
    ``approx_min_items`` items); its resolved choice is part of the key. Next to each
    graph a ``.json`` records the backend, build time and, for approximate backends,
    the recall measured against exact search on a sample of rows.

    ``hits`` / ``misses`` count lookups; ``last_key`` / ``last_path`` say what was used.
    With ``cache_dir=None`` every call builds the graph (nothing is written).
    """

    def __init__(self, cache_dir: Path | str | None, search: KnnSearch | None = None):
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.search = search or KnnSearch()
        self.last_info: dict | None = None  # backend, seconds, recall of the last graph (from its .json)
        self.hits = 0
        self.misses = 0
        self.last_key: str | None = None
        self.last_path: Path | None = None

    def get(
        self,
        features,
        k: int = 10,
        modality: str = "features",
        weighted: bool = True,
        normalization: Normalization = "sym",
        content_hash: str | None = None,
        chunk_size: int | None = None,
        include_self: bool = True,
    ) -> sp.csr_matrix:
        n = int(features.shape[0])
        digest = content_hash or hash_array(features)
        key = knn_cache_key(digest, n, k, weighted, normalization, modality, include_self, self.search.spec(n))
        self.last_key = key
        path = None if self.cache_dir is None else knn_cache_path(self.cache_dir, modality, k, key)
        self.last_path = path
        if path is not None and path.is_file():
            try:
                graph = sp.load_npz(path).tocsr()
                if graph.shape == (n, n):
                    self.hits += 1
                    self.last_info = _read_info(path)
                    return graph
            except (OSError, ValueError) as exc:  # a damaged file is rebuilt, not trusted
                log.warning("ignoring unreadable kNN cache %s: %s", path, exc)
        self.misses += 1
        graph, res = knn_graph_result(features, k, weighted, normalization, chunk_size, include_self, self.search)
        self.last_info = res.info()
        if path is not None:
            _save_atomic(graph, path)
            _write_info(path, self.last_info)
        return graph


def cached_knn_graph(features, cache_dir: Path | str | None, **kwargs) -> sp.csr_matrix:
    """One-shot :meth:`KnnGraphCache.get`."""
    return KnnGraphCache(cache_dir).get(features, **kwargs)
