"""DualGNN's user co-occurrence graph, built with sparse products.

Wang et al., "DualGNN: Dual Graph Neural Network for Multimedia Recommendation",
IEEE TMM 2021, Section III-C: users are linked to the users they share the most
interacted items with. The co-occurrence counts are ``R @ R^T`` (R the binary train
matrix); each user keeps its top-k other users. The reference toolbox filled a dense
U x U matrix with a double Python loop over users (hours on Baby); here the product is
sparse, computed over chunks of users, and the row-wise top-k is one lexsort per chunk.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from cliper.atomic import atomic_write
from cliper.errors import ConfigError

log = logging.getLogger(__name__)

USER_WEIGHTINGS = ("softmax", "mean")


def _csr_rowwise_topk(m: sp.csr_matrix, k: int, diagonal_offset: int | None = None) -> sp.csr_matrix:
    """Keep each row's ``k`` largest entries; ties go to the smaller column index.

    Co-occurrence counts are small non-negative integers, so (row, -count, column)
    packs into one int64 key and a single argsort orders the whole block. With
    ``diagonal_offset`` the entries (r, r + offset) are dropped first (a user is not
    its own neighbour).
    """
    m = sp.csr_matrix(m)
    m.sort_indices()
    counts = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), counts)
    if diagonal_offset is not None:
        off = m.indices != rows + diagonal_offset
        counts = np.bincount(rows[off], minlength=m.shape[0])
        indptr = np.concatenate([[0], np.cumsum(counts)])
        m = sp.csr_matrix((m.data[off], m.indices[off], indptr), shape=m.shape)
        rows = rows[off]
    values = np.rint(m.data).astype(np.int64)
    if m.nnz and (values.min() < 0 or not np.array_equal(values, m.data)):
        raise ValueError("row-wise top-k expects non-negative integer counts")
    span = (int(values.max()) + 1 if m.nnz else 1) * m.shape[1]
    key = rows * span + (span - m.shape[1] - values * m.shape[1]) + m.indices
    order = np.argsort(key, kind="stable")
    rank = np.arange(m.nnz) - np.repeat(m.indptr[:-1], counts)  # position within its row, after sorting
    keep = order[rank < k]
    out = sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape)
    out.sort_indices()
    return out


def co_occurrence_topk(train: sp.spmatrix, k: int, chunk_users: int = 4096) -> sp.csr_matrix:
    """U x U sparse matrix: for each user, the co-interaction counts with its top-k other users.

    Row u holds at most ``k`` entries (fewer when u co-interacts with fewer users); the
    diagonal is excluded. Memory is bounded by one ``chunk_users x U`` sparse block.
    """
    if k <= 0:
        raise ConfigError(f"user graph k must be positive, got {k}")
    r = sp.csr_matrix(train, dtype=np.float32)
    r.data[:] = 1.0
    r_t = sp.csr_matrix(r.T)
    n = r.shape[0]
    blocks = []
    for start in range(0, n, chunk_users):
        stop = min(start + chunk_users, n)
        block = sp.csr_matrix(r[start:stop] @ r_t)  # counts of shared items
        blocks.append(_csr_rowwise_topk(block, k, diagonal_offset=start))
    return sp.csr_matrix(sp.vstack(blocks, format="csr")) if blocks else sp.csr_matrix((0, 0), dtype=np.float32)


def neighbour_weights(counts: sp.csr_matrix, weighting: str = "softmax") -> sp.csr_matrix:
    """Row-stochastic weights over each user's kept neighbours.

    ``softmax``: softmax of the co-interaction counts within the row (the reference
    implementation's default); ``mean``: uniform. Users without neighbours get an empty row.
    """
    if weighting not in USER_WEIGHTINGS:
        raise ConfigError(f"unknown user graph weighting {weighting!r}; choose one of {', '.join(USER_WEIGHTINGS)}")
    c = sp.csr_matrix(counts, dtype=np.float64)
    c.sort_indices()
    n_per_row = np.diff(c.indptr)
    rows = np.repeat(np.arange(c.shape[0]), n_per_row)
    if weighting == "mean":
        vals = 1.0 / n_per_row[rows]
    else:
        peak = np.zeros(c.shape[0])
        np.maximum.at(peak, rows, c.data)
        e = np.exp(c.data - peak[rows])
        vals = e / np.bincount(rows, weights=e, minlength=c.shape[0])[rows]
    return sp.csr_matrix((vals.astype(np.float32), c.indices, c.indptr), shape=c.shape)


def train_graph_hash(train: sp.spmatrix) -> str:
    """Content hash of a train matrix's sparsity pattern (shape + CSR structure)."""
    m = sp.csr_matrix(train)
    m.sum_duplicates()
    m.sort_indices()
    h = hashlib.sha256()
    h.update(np.asarray(m.shape, dtype=np.int64).tobytes())
    h.update(m.indptr.astype(np.int64).tobytes())
    h.update(m.indices.astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def user_graph_cache_path(cache_dir: Path, train: sp.spmatrix, k: int) -> Path:
    return Path(cache_dir) / "user_graph" / f"cooc_top{k}_{train_graph_hash(train)}.npz"


def build_user_graph(
    train: sp.spmatrix,
    k: int = 10,
    weighting: str = "softmax",
    cache_dir: Path | None = None,
    chunk_users: int = 4096,
) -> sp.csr_matrix:
    """The weighted user-user graph (U x U, row-stochastic over top-k co-interacting users).

    The top-k count matrix is cached in ``cache_dir/user_graph/`` under a key made of a
    hash of the train graph and ``k`` (the weighting is applied after loading).
    """
    path = None if cache_dir is None else user_graph_cache_path(cache_dir, train, k)
    counts = None
    if path is not None and path.is_file():
        try:
            counts = sp.load_npz(path).tocsr()
            log.debug("user graph cache hit: %s", path)
        except (OSError, ValueError) as exc:  # a damaged cache is rebuilt, not trusted
            log.warning("ignoring unreadable user graph cache %s: %s", path, exc)
            counts = None
    if counts is None or counts.shape != (train.shape[0], train.shape[0]):
        counts = co_occurrence_topk(train, k, chunk_users)
        if path is not None:
            atomic_write(path, lambda fh: sp.save_npz(fh, counts), suffix=".tmp.npz")
    return neighbour_weights(counts, weighting)
