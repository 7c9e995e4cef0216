"""Top-k cosine neighbour search behind the kNN item graphs: torch (exact) or faiss.

Backends (``graph.knn_backend``):

- ``torch``: exact, in row blocks (``default_chunk_size``: ~2 MiB tiles, cache-hot from the
  product to a grouped selection, :class:`_Selection`, for features up to 256-d; ~64 MiB blocks
  for wider ones); float32 ties at the candidate boundary keep the smaller index too.
- ``faiss-exact``: exact, a faiss ``IndexFlatIP`` over the L2-normalised rows.
- ``faiss-ivf``: approximate, an inverted-file (IVF) index: ``nlist`` spherical faiss
  k-means centroids trained on a seeded sample, every item stored in the list of its
  nearest centroid, every item's neighbours searched in the ``nprobe`` lists nearest to
  it. As every item is also a query, the search runs as a batched join (list by list,
  one matrix product between the list's items and all the items that probe it), which
  finds exactly what ``faiss.IndexIVFFlat.search`` finds with the same centroids and
  ``nprobe``, at matrix-product speed instead of one scan per query (~15x on a CPU).
- ``faiss-hnsw``: approximate, ``IndexHNSWFlat`` (inner product).
- ``auto``: ``torch`` below ``approx_min_items`` items, ``faiss-ivf`` from there on
  (``torch`` with a warning when faiss is not installed).

Approximate search is only used from ``approx_min_items`` items on; below that size the
approximate backends search exactly with ``faiss-exact`` (exact search is cheap there).

Every backend only proposes CANDIDATES (``k + TIE_MARGIN`` other items per row). The
candidates are then re-scored in float64 from the raw features by one shared function
and ordered by (similarity descending, item index ascending), so two backends that
propose the same candidates give identical neighbours and identical weights, and an
exact tie keeps the smaller item index. Self-loops are handled outside the search: the
item itself is removed from its candidates, then put first when ``include_self`` (as
LATTICE's and FREEDOM's dense ``topk`` over ``X X^T`` kept it). A zero row has
similarity 0 to every item.

After an approximate build, ``recall_sample`` seeded rows are searched exactly and the
recall of the approximate neighbour lists (self excluded) is returned with the result.

faiss is imported lazily, only here and only when a faiss backend is used.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from cliper.errors import ConfigError
from cliper.extras import require

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "faiss-exact", "faiss-ivf", "faiss-hnsw")
APPROXIMATE = ("faiss-ivf", "faiss-hnsw")
KMEANS_ITER = 10  # IVF k-means iterations
KMEANS_POINTS = 20  # IVF k-means training points per list (seeded sample)
TIE_MARGIN = 4  # extra candidates per row, so float32 near-ties are settled in float64
FAISS_HINT = "install the faiss extra: pip install 'cliper[faiss]' (faiss-cpu; faiss-gpu on a GPU machine)"

# Keep a chunk's similarity block near this many floats (64 MiB) unless told otherwise.
_BLOCK_FLOATS = 1 << 24
_TILE_FLOATS = 1 << 19  # exact search: similarity tile of ~2 MiB (default_chunk_size)
_MIN_TILE_ROWS = 16
_COPY_MAX_DIM = 256  # exact search: features up to this width are normalised into one copy ...
_COPY_MAX_FLOATS = 1 << 26  # ... of at most 256 MiB
_QUERY_CHUNK = 16384  # faiss queries per search call
_RESCORE_FLOATS = 1 << 20  # float64 elements gathered per re-scoring chunk (8 MiB: from the heap, not a fresh mmap)


@dataclass(frozen=True)
class KnnSearch:
    """How neighbours are searched (the ``graph`` config section); part of the graph cache key."""

    backend: str = "auto"
    approx_min_items: int = 100_000  # auto switches to faiss-ivf here; approximate search only from here on
    ivf_nlist: int | None = None  # IVF lists (None: 4 * sqrt(N))
    ivf_nprobe: int = 32  # IVF lists visited per query
    hnsw_m: int = 32  # HNSW links per node
    hnsw_ef_construction: int = 40  # HNSW build beam width
    hnsw_ef_search: int = 128  # HNSW search beam width (at least k + margin)
    recall_sample: int = 1000  # rows checked against exact search after an approximate build
    seed: int = 0  # IVF training sample and recall sample

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown graph.knn_backend {self.backend!r}; choose from {', '.join(BACKENDS)}")

    def resolve(self, n_items: int) -> str:
        """The backend actually used for ``n_items`` items (never ``auto``)."""
        b = self.backend
        if b == "auto":
            if n_items < self.approx_min_items:
                return "torch"
            if not faiss_available():
                log.warning("kNN graph of %d items: faiss is not installed, searching exactly with torch (slow); %s",
                            n_items, FAISS_HINT)
                return "torch"
            return "faiss-ivf"
        if b in APPROXIMATE and n_items < self.approx_min_items:
            return "faiss-exact"
        return b

    def spec(self, n_items: int) -> dict[str, Any]:
        """What shapes the neighbours at this size: the resolved backend and its index parameters."""
        b = self.resolve(n_items)
        out: dict[str, Any] = {"backend": b}
        if b == "faiss-ivf":
            out.update(nlist=ivf_nlist(self, n_items), nprobe=min(self.ivf_nprobe, ivf_nlist(self, n_items)),
                       seed=self.seed, kmeans=f"spherical, {KMEANS_ITER} iterations, {KMEANS_POINTS} points per list")
        elif b == "faiss-hnsw":
            out.update(m=self.hnsw_m, ef_construction=self.hnsw_ef_construction, ef_search=self.hnsw_ef_search)
        return out

    @classmethod
    def from_config(cls, section: Any) -> "KnnSearch":
        """From the ``graph`` config section (its ``knn_*`` keys)."""
        names = {f for f in cls.__dataclass_fields__}
        d = section if isinstance(section, dict) else section.model_dump()
        return cls(**{k[4:]: v for k, v in d.items() if k.startswith("knn_") and k[4:] in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class KnnResult:
    """Neighbours [N, k] (best first), their cosine similarities (None when not asked for), and how
    they were found."""

    values: torch.Tensor | None
    indices: torch.Tensor
    backend: str
    seconds: float
    recall: float | None = None  # recall@k (self excluded) on a sample, approximate backends only
    recall_rows: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        return {"backend": self.backend, "seconds": round(self.seconds, 3), "recall": self.recall,
                "recall_rows": self.recall_rows, "k": int(self.indices.shape[1]), "n": int(self.indices.shape[0]),
                **self.params}


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _import_faiss():
    faiss = require("faiss", "faiss", "the kNN backend", "(faiss-cpu; faiss-gpu on a GPU machine)")
    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))  # one thread knob for torch and faiss
    return faiss


def ivf_nlist(search: KnnSearch, n: int) -> int:
    return int(search.ivf_nlist or max(1, min(n // 39, round(4 * math.sqrt(n)))))


def as_float_tensor(features) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        return features.detach().float()
    return torch.as_tensor(np.ascontiguousarray(np.asarray(features, dtype=np.float32)))


def default_chunk_size(n_items: int, dim: int | None = None) -> int:
    """Rows per similarity tile of the exact search.

    Narrow features (``dim`` <= ``_COPY_MAX_DIM``: LATTICE's learned 64-d graph): a ``chunk x N``
    float tile of ~2 MiB (a core's L2 here) is still cache-hot from the product to the selection
    (1 and 2 MiB measured alike on Baby; 64 MiB blocks went through memory); at least 16 rows.
    Wide ones (the 4096-d initial graphs; ``dim`` unknown): ~64 MiB blocks, since every block
    streams the whole feature matrix through the product and small blocks would re-read it
    (4096-d Baby: 74-row tiles were ~13% slower than 2,379-row blocks)."""
    if dim is None or dim > _COPY_MAX_DIM:
        return int(max(1, min(n_items, _BLOCK_FLOATS // max(n_items, 1))))
    return int(max(1, min(n_items, max(_MIN_TILE_ROWS, _TILE_FLOATS // max(n_items, 1)))))


def _inverse_norms(x: torch.Tensor) -> torch.Tensor:
    norms = x.norm(dim=1)
    return torch.where(norms > 0, 1.0 / norms.clamp_min(1e-30), torch.zeros_like(norms))


# -- candidates ------------------------------------------------------------------------
GROUP = 16  # columns per group of the grouped pre-selection (:class:`_Selection`)
SUPER = 8  # groups per super group (its second level)


class _Selection:
    """The ``m`` largest values of each row of similarity tiles, exact; ties at the m-th keep the smaller index.

    Instead of one ``topk`` over the whole row (~2 ns per value at one thread): a tile of ``width``
    = G * GROUP columns (padded with -inf) is viewed as GROUP strided slices of G columns, whose
    element-wise maximum (vectorised) gives each group {c, c + G, c + 2G, ...} its maximum. The m
    best values lie in the m groups with the largest maxima (each of them holds a value >= any
    value outside them), so only those m * GROUP values go to ``topk``. A row is settled when its
    (m+1)-th candidate is below its m-th and no group left out reaches the m-th; the other rows
    (exact float32 ties at the boundary: zero rows, duplicate items; NaN) are listed by
    :meth:`unsettled` and sorted stably by the caller, so ties keep the smaller index. Results
    go straight into per-row buffers (``out=``): a tile costs a dozen small operations. With many
    groups (Baby: 448) the group maxima are grouped the same way again (SUPER per super group), so
    ``topk`` sees 56 + 104 + 208 values per row instead of 448 + 208 (the ``topk`` calls were
    two thirds of the selection). Small catalogues (fewer than 2 (m+1) groups) use one ``topk``
    over the row, same rule.
    """

    def __init__(self, n_rows: int, n: int, m: int, chunk: int, device, keep_values: bool = False):
        self.n, self.m = n, m
        self.grouped = n // GROUP >= 2 * (m + 1)
        # two levels when the groups are many: their maxima are grouped again (SUPER strided slices)
        self.two_level = self.grouped and n // (GROUP * SUPER) >= 2 * (m + 1)
        per = GROUP * SUPER if self.two_level else GROUP
        self.g = -(-n // per) * (per // GROUP)  # groups; a multiple of SUPER on two levels
        self.width = self.g * GROUP if self.grouped else n
        self.offsets = torch.arange(GROUP, device=device) * self.g
        self.super_offsets = torch.arange(SUPER, device=device) * (self.g // SUPER)
        rows = min(chunk, n_rows)  # per-tile buffers; per row only the columns and three bounds are kept
        if self.grouped:
            self.gmax = torch.empty(rows, self.g, device=device)
            self.group_v = torch.empty(rows, m + 1, device=device)
            self.group_i = torch.empty(rows, m + 1, dtype=torch.int64, device=device)
        if self.two_level:
            self.smax = torch.empty(rows, self.g // SUPER, device=device)
            self.super_v = torch.empty(rows, m + 1, device=device)
            self.super_i = torch.empty(rows, m + 1, dtype=torch.int64, device=device)
        self.best_v = torch.empty(rows, m + 1, device=device)
        self.best_j = torch.empty(rows, m + 1, dtype=torch.int64, device=device)
        # per row: the m-th and (m+1)-th candidate values, the largest value outside the chosen groups
        self.bounds = torch.full((n_rows, 3), -torch.inf, device=device)
        self.cols = torch.empty(n_rows, m, dtype=torch.int64, device=device)
        self.values = torch.empty(n_rows, m, device=device) if keep_values else None  # float32, best first

    def take(self, tile: torch.Tensor, s: int) -> None:
        """Select rows ``s ..`` from ``tile`` [rows, width] (padding and self already -inf)."""
        nr, m = tile.shape[0], self.m
        e = s + nr
        best_v, best_j = self.best_v[:nr], self.best_j[:nr]
        if not self.grouped:
            torch.topk(tile, m + 1, dim=1, out=(best_v, best_j))
            self.cols[s:e] = best_j[:, :m]
            self.bounds[s:e, :2] = best_v[:, m - 1 :]
            if self.values is not None:
                self.values[s:e] = best_v[:, :m]
            return
        gmax, group_v, group_i = self.gmax[:nr], self.group_v[:nr], self.group_i[:nr]
        torch.amax(tile.view(nr, GROUP, self.g), 1, out=gmax)
        if self.two_level:  # the m best groups lie in the m super groups with the largest maxima
            smax, super_v, super_i = self.smax[:nr], self.super_v[:nr], self.super_i[:nr]
            torch.amax(gmax.view(nr, SUPER, self.g // SUPER), 1, out=smax)
            torch.topk(smax, m + 1, dim=1, out=(super_v, super_i))
            groups = (super_i[:, :m, None] + self.super_offsets).view(nr, m * SUPER)
            torch.topk(gmax.gather(1, groups), m + 1, dim=1, out=(group_v, group_i))
            best_groups = groups.gather(1, group_i[:, :m])
            torch.maximum(group_v[:, m], super_v[:, m], out=self.bounds[s:e, 2])
        else:
            torch.topk(gmax, m + 1, dim=1, out=(group_v, group_i))
            best_groups = group_i[:, :m]
            self.bounds[s:e, 2] = group_v[:, m]
        cols = (best_groups[:, :, None] + self.offsets).view(nr, m * GROUP)
        torch.topk(tile.gather(1, cols), m + 1, dim=1, out=(best_v, best_j))
        torch.gather(cols, 1, best_j[:, :m], out=self.cols[s:e])
        self.bounds[s:e, :2] = best_v[:, m - 1 :]
        if self.values is not None:
            self.values[s:e] = best_v[:, :m]

    def unsettled(self) -> torch.Tensor:
        """Positions of the rows whose m best are not unique (a tie at the m-th value, or NaN)."""
        mth = self.bounds[:, 0]
        # the (m+1)-th candidate and everything outside the chosen groups must stay below the m-th
        bad = ~(self.bounds[:, 1] < mth) | ~(self.bounds[:, 2] < mth)
        return bad.nonzero().squeeze(1)


def _stable_best(sims: torch.Tensor, m: int) -> torch.Tensor:
    return torch.sort(sims, dim=1, descending=True, stable=True).indices[:, :m]


@torch.no_grad()
def _torch_candidates(x: torch.Tensor, inv: torch.Tensor, rows: torch.Tensor, m: int, chunk: int,
                      keep_values: bool = False):
    """The ``m`` most similar OTHER items of each of ``rows`` (exact, in tiles of ``chunk`` rows).

    With ``keep_values`` also their float32 scores ``x_r . x_c / |x_c|`` (best first; NaN for the
    rows settled by the stable sort), for :func:`_decided_in_float32`.

    Each tile is ``x_rows @ (x / |x|)^T``: a row's own norm is a positive factor that does not
    change its order, so it is left out (one pass less over the tile). Narrow features
    (<= ``_COPY_MAX_DIM``, LATTICE's learned 64-d; the copy at most 256 MiB) are normalised once
    into a padded copy; wide ones are not copied (4096-d: 115 MiB on Baby), their tile is scaled by the column norms on
    its way into the padded tile instead (one pass, small next to a 4096-deep product). Tiles of
    the default size stay in a core's L2 cache from the product to the selection
    (:class:`_Selection`); rows it leaves unsettled are recomputed and sorted stably, a tile at a
    time. Candidates are float32; :func:`finalize` re-scores them in float64.
    """
    n, d = x.shape
    nr_all = rows.numel()
    sel = _Selection(nr_all, n, m, chunk, x.device, keep_values)
    copy = d <= _COPY_MAX_DIM and n * d <= _COPY_MAX_FLOATS
    if copy:
        xs = torch.zeros(sel.width, d, device=x.device)
        torch.mul(x, inv[:, None], out=xs[:n])
    raw = None if copy or sel.width == n else torch.empty(min(chunk, nr_all), n, device=x.device)

    def similarities(r: torch.Tensor, s: int, e: int, out: torch.Tensor) -> torch.Tensor:
        """out [rows, width] = x_r . x_c / |x_c| (padding -inf, self left as it is)."""
        xr = x[s:e] if r is None else x.index_select(0, r)
        if copy:
            torch.mm(xr, xs.T, out=out)
        elif raw is None:
            torch.mm(xr, x.T, out=out)
            out.mul_(inv)
        else:
            part = raw[: out.shape[0]]
            torch.mm(xr, x.T, out=part)
            torch.mul(part, inv, out=out[:, :n])
        if sel.width > n:
            out[:, n:] = -torch.inf
        return out

    buf = torch.empty(min(chunk, nr_all), sel.width, device=x.device)
    self_at = (torch.arange(nr_all, device=x.device) % chunk) * sel.width + rows  # self, flat in its tile
    in_order = nr_all == n and bool((rows == torch.arange(n, device=rows.device)).all())
    for s in range(0, nr_all, chunk):
        e = min(s + chunk, nr_all)
        tile = similarities(None if in_order else rows[s:e], s, e, buf[: e - s])
        tile.view(-1)[self_at[s:e]] = -torch.inf  # self is handled outside
        sel.take(tile, s)
    bad = sel.unsettled()
    for s in range(0, bad.numel(), chunk):  # rare: exact ties at the boundary (zero rows, duplicates), NaN
        b = bad[s:s + chunk]
        r = rows[b]
        sims = similarities(r, 0, 0, buf[: b.numel()])[:, :n]
        sims[torch.arange(r.numel(), device=x.device), r] = -torch.inf
        sel.cols[b] = _stable_best(sims, m)
        if keep_values:
            sel.values[b] = torch.nan  # decided in float64
    return (sel.cols, sel.values) if keep_values else sel.cols


def _decided_in_float32(values: torch.Tensor, inv: torch.Tensor, dim: int, upto: int) -> torch.Tensor:
    """Rows whose float32 candidate order over the first ``upto`` positions is provably the float64 one.

    A float32 score of length ``dim`` is within (dim + 1) u |x_r| of the exact one (u = 2^-24; any
    summation order, the column normalisation's rounding included), so where every adjacent gap,
    scaled to cosines by ``inv``, exceeds twice that (with margin), :func:`finalize` would order
    the candidates, and cut them, exactly as float32 does.
    """
    if upto < 2:
        return torch.ones(values.shape[0], dtype=torch.bool, device=values.device)
    v = values[:, :upto].double()
    bound = 2 * ((dim + 2) * 2.0**-24 * 1.01 + 1e-12)
    gaps = (v[:, :-1] - v[:, 1:]) * inv.double()[:, None]
    return (gaps > bound).all(1)  # NaN (stably sorted rows) and zero rows (inv 0) are not decided


def _normalised(x: torch.Tensor, inv: torch.Tensor, start: int, stop: int) -> np.ndarray:
    return np.ascontiguousarray((x[start:stop] * inv[start:stop, None]).cpu().numpy(), dtype=np.float32)


def _faiss_index(x: torch.Tensor, inv: torch.Tensor, backend: str, search: KnnSearch):
    faiss = _import_faiss()
    n, d = x.shape
    if backend == "faiss-exact":
        index = faiss.IndexFlatIP(d)
    elif backend == "faiss-hnsw":
        index = faiss.IndexHNSWFlat(d, search.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = search.hnsw_ef_construction
    else:  # pragma: no cover - resolve() never returns anything else
        raise ValueError(backend)
    for start in range(0, n, _QUERY_CHUNK):  # rows normalised a chunk at a time: no full normalised copy
        index.add(_normalised(x, inv, start, min(start + _QUERY_CHUNK, n)))
    return index


def _faiss_candidates(index, x: torch.Tensor, inv: torch.Tensor, backend: str, search: KnnSearch, m: int) -> torch.Tensor:
    """The ``m`` most similar other items per row from a faiss index (-1 where it found fewer)."""
    n = x.shape[0]
    want = min(n, m + 1)  # one more: the item itself is usually among its hits
    if backend == "faiss-hnsw":
        index.hnsw.efSearch = max(search.hnsw_ef_search, want)
    out = np.empty((n, m), dtype=np.int64)
    for start in range(0, n, _QUERY_CHUNK):
        stop = min(start + _QUERY_CHUNK, n)
        _, ids = index.search(_normalised(x, inv, start, stop), want)
        ids[ids == np.arange(start, stop)[:, None]] = -1  # drop self; keep the m best others
        order = np.argsort(ids < 0, axis=1, kind="stable")[:, :m]
        out[start:stop] = np.take_along_axis(ids, order, 1)
    return torch.from_numpy(out)


def train_ivf_centroids(x: torch.Tensor, inv: torch.Tensor, nlist: int, seed: int) -> np.ndarray:
    """Spherical faiss k-means on a seeded sample of the normalised rows: the IVF lists' centroids."""
    faiss = _import_faiss()
    n, d = x.shape
    sample = np.sort(np.random.default_rng(seed).choice(n, size=min(n, KMEANS_POINTS * nlist), replace=False))
    idx = torch.from_numpy(sample)
    km = faiss.Kmeans(d, nlist, niter=KMEANS_ITER, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1)
    km.train(np.ascontiguousarray((x[idx] * inv[idx, None]).numpy(), dtype=np.float32))
    return km.centroids


@torch.no_grad()
def ivf_join(x: torch.Tensor, inv: torch.Tensor, centroids: np.ndarray, nprobe: int, m: int) -> torch.Tensor:
    """The ``m`` best other items of every row among the ``nprobe`` IVF lists nearest to it (-1: none).

    List by list: the list's items against every item probing it, one matrix product
    per block of queries; each query's running top-m is merged with the block's.
    """
    faiss = _import_faiss()
    n, d = x.shape
    nlist = centroids.shape[0]
    quantizer = faiss.IndexFlatIP(d)
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    probes = np.empty((n, nprobe), dtype=np.int64)
    for start in range(0, n, _QUERY_CHUNK):
        stop = min(start + _QUERY_CHUNK, n)
        probes[start:stop] = quantizer.search(_normalised(x, inv, start, stop), nprobe)[1]
    assign = probes[:, 0]  # an item is stored in the list of its nearest centroid
    members = np.argsort(assign, kind="stable")
    m_bounds = np.searchsorted(assign[members], np.arange(nlist + 1))
    flat = probes.ravel()
    q_order = np.argsort(flat, kind="stable")
    q_bounds = np.searchsorted(flat[q_order], np.arange(nlist + 1))
    queries = torch.from_numpy(q_order // nprobe)
    del probes, flat, q_order
    members_t = torch.from_numpy(members)
    best_v = torch.full((n, m), -torch.inf)
    best_i = torch.full((n, m), -1, dtype=torch.int64)
    for c in range(nlist):
        mem = members_t[m_bounds[c]:m_bounds[c + 1]]
        if mem.numel() == 0:
            continue
        xb = x[mem] * inv[mem, None]
        qs = queries[q_bounds[c]:q_bounds[c + 1]]
        step = max(1, _BLOCK_FLOATS // 4 // mem.numel())
        kk = min(m, mem.numel())
        for s in range(0, qs.numel(), step):
            q = qs[s:s + step]
            sim = (x[q] * inv[q, None]) @ xb.T
            sim.masked_fill_(q[:, None] == mem[None, :], -torch.inf)  # self is handled outside
            v, j = torch.topk(sim, kk, dim=1)
            cv = torch.cat([best_v[q], v], 1)
            ci = torch.cat([best_i[q], mem[j]], 1)
            tv, tj = torch.topk(cv, m, dim=1)
            best_v[q] = tv
            best_i[q] = ci.gather(1, tj)
    best_i[torch.isinf(best_v)] = -1
    return best_i


# -- shared re-scoring ---------------------------------------------------------------------
@torch.no_grad()
def finalize(x: torch.Tensor, inv: torch.Tensor, rows: torch.Tensor, cand: torch.Tensor, k: int,
             include_self: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-score candidates in float64, order by (similarity desc, index asc), keep ``k``.

    ``cand`` holds other items only (-1 = none); with ``include_self`` the row itself is
    put first. Shared by every backend, so equal candidates give equal graphs.
    """
    n_rows, m = cand.shape
    if include_self:
        cand = torch.cat([rows[:, None], cand], 1)
        m += 1
    values = torch.empty(n_rows, k, dtype=torch.float32)
    indices = torch.empty(n_rows, k, dtype=torch.int64)
    chunk = max(1, _RESCORE_FLOATS // max(1, m * x.shape[1]))
    for s in range(0, n_rows, chunk):
        r, c = rows[s:s + chunk].to(x.device), cand[s:s + chunk].to(x.device)
        valid = c >= 0
        cc = c.clamp_min(0)
        xc = x.index_select(0, cc.reshape(-1)).view(*cc.shape, -1).double()  # index_select: ~2x x[cc] here
        dots = torch.bmm(x.index_select(0, r).double().unsqueeze(1), xc.transpose(1, 2)).squeeze(1)  # einsum's layout
        sim = dots * inv[r, None].double() * inv[cc].double()
        if include_self:
            sim[:, 0] = torch.inf  # self first, whatever its similarity (1, or 0 for a zero row)
        sim = torch.where(valid, sim, torch.full_like(sim, -torch.inf))
        # sort by index first, then stably by similarity: ties keep the smaller index
        by_index = torch.argsort(cc + (~valid) * (1 << 62), dim=1, stable=True)
        sim, cc = sim.gather(1, by_index), cc.gather(1, by_index)
        order = torch.argsort(-sim, dim=1, stable=True)[:, :k]
        top = sim.gather(1, order)
        if include_self:
            self_sim = (x[r].double().pow(2).sum(1) * inv[r].double() ** 2)
            top[:, 0] = self_sim
        if not torch.isfinite(top).all():
            raise ConfigError(f"the search found fewer than {k} neighbours for some items; raise "
                              "graph.knn_ivf_nprobe or graph.knn_hnsw_ef_search, or use graph.knn_backend=faiss-exact")
        values[s:s + r.numel()] = top.float().cpu()
        indices[s:s + r.numel()] = cc.gather(1, order).cpu()
    return values, indices


def _recall(approx: torch.Tensor, exact: torch.Tensor, rows: torch.Tensor) -> float:
    """Mean fraction of each row's exact neighbours (self excluded) that the approximate search found."""
    hits, total = 0, 0
    for r, a, e in zip(rows.tolist(), approx.tolist(), exact.tolist()):
        es = set(e) - {r}
        hits += len(es & (set(a) - {r}))
        total += len(es)
    return hits / total if total else 1.0


# -- entry point -------------------------------------------------------------------------
@torch.no_grad()
def search_knn(features, k: int, include_self: bool = True, search: KnnSearch | None = None,
               chunk_size: int | None = None, with_values: bool = True) -> KnnResult:
    """Top-k cosine neighbours of every row with the configured backend (see the module doc).

    ``with_values=False`` (torch backend; LATTICE's learned graph, whose edge values are recomputed
    anyway): ``values`` is None and only the rows whose float32 order is not provably final
    (:func:`_decided_in_float32`) are re-scored in float64; the indices are those of the full
    re-scoring."""
    search = search or KnnSearch()
    x = as_float_tensor(features)
    n = x.shape[0]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k_eff = min(k, n if include_self else n - 1)
    if k_eff < 1:
        raise ValueError(f"cannot take {k} neighbours among {n} items")
    others = k_eff - 1 if include_self else k_eff
    m = min(n - 1, others + TIE_MARGIN)
    backend = search.resolve(n)
    chunk = chunk_size or default_chunk_size(n, x.shape[1])
    t0 = time.perf_counter()
    inv = _inverse_norms(x)
    rows = torch.arange(n, device=x.device)
    if not with_values and backend == "torch" and m > 0:
        cand, cvals = _torch_candidates(x, inv, rows, m, chunk, keep_values=True)
        sure = _decided_in_float32(cvals, inv, x.shape[1], min(others + 1, m))
        indices = torch.empty(n, k_eff, dtype=torch.int64, device=x.device)
        if include_self:
            indices[:, 0] = rows
        indices[:, int(include_self):] = cand[:, :others]
        unsure = (~sure).nonzero().squeeze(1)
        if unsure.numel():
            indices[unsure] = finalize(x, inv, unsure.cpu(), cand[unsure], k_eff, include_self)[1].to(x.device)
        return KnnResult(None, indices, backend, time.perf_counter() - t0, params=search.spec(n))
    if m == 0:
        cand = torch.empty(n, 0, dtype=torch.int64)
    elif backend == "torch":
        cand = _torch_candidates(x, inv, rows, m, chunk)
    elif backend == "faiss-ivf":
        nlist = ivf_nlist(search, n)
        xc, ic = x.cpu(), inv.cpu()
        cand = ivf_join(xc, ic, train_ivf_centroids(xc, ic, nlist, search.seed), min(search.ivf_nprobe, nlist), m)
    else:
        index = _faiss_index(x, inv, backend, search)
        cand = _faiss_candidates(index, x, inv, backend, search, m)
        del index
    values, indices = finalize(x, inv, rows.cpu(), cand, k_eff, include_self)
    result = KnnResult(values.to(x.device), indices.to(x.device), backend, time.perf_counter() - t0,
                       params=search.spec(n))
    if backend in APPROXIMATE and m > 0:
        sample = torch.from_numpy(np.sort(np.random.default_rng(search.seed + 1).choice(
            n, size=min(n, search.recall_sample), replace=False))).to(x.device)
        exact_cand = _torch_candidates(x, inv, sample, m, default_chunk_size(n, x.shape[1]))
        _, exact = finalize(x, inv, sample.cpu(), exact_cand, k_eff, include_self)
        result.recall = _recall(indices[sample.cpu()], exact, sample.cpu())
        result.recall_rows = int(sample.numel())
        log.info("kNN graph of %d items with %s: recall@%d %.4f on %d rows (%.1f s)", n, backend, k_eff,
                 result.recall, result.recall_rows, result.seconds)
    return result
