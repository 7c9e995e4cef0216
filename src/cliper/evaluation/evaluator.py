"""Full ranking over all items, in user chunks, masking each user's TRAIN items only."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch

from cliper.data.interactions import InteractionData
from cliper.evaluation.metrics import METRICS
from cliper.models.base import Recommender


# CPU score tiles: a 256 x 512 float block (512 KiB) stays in cache while written; one product per
# chunk wrote 4096 x 7050 at once, about 1.6x slower at 64-d (1.15x at 192-d) on one thread, same values
TILE_ROWS, TILE_COLS = 256, 512


class Scorer(Protocol):
    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor: ...


def _csr_rows_to_tensors(matrix, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(row position in chunk, column) of the non-zeros of ``rows`` of a CSR matrix."""
    starts, ends = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = ends - starts
    local = np.repeat(np.arange(rows.size), lengths)
    offs = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = matrix.indices[np.repeat(starts, lengths) + offs]
    return torch.from_numpy(local), torch.from_numpy(cols.astype(np.int64))


def _hit_matrix(top: torch.Tensor, truth_nz: tuple[torch.Tensor, torch.Tensor], n_items: int) -> torch.Tensor:
    """B x K bool: is ``top[b, r]`` among row b's relevant items (given as (row, column) pairs)."""
    rows, cols = truth_nz
    top_keys = torch.arange(top.shape[0]).unsqueeze(1) * n_items + top
    if rows.numel() == 0:
        return torch.zeros(top.shape, dtype=torch.bool)
    # a binary search in the sorted keys: torch.isin sorted the B x K keys too (5 % of a Baby pass)
    keys = torch.sort(rows * n_items + cols).values
    found = keys[torch.searchsorted(keys, top_keys).clamp_(max=keys.numel() - 1)]
    return found == top_keys


class Evaluator:
    """Scores users in chunks of ``batch_size`` so memory stays bounded.

    For each chunk: scores from the model (B x n_items, float32), train items set to
    -inf, top-max(K) by ``torch.topk``, hits looked up in the split's relevant items,
    and every metric accumulated as a per-user sum. Averages are over users with at
    least one relevant item in the split.

    The only B x n_items tensor is the score chunk: hits are found by looking the B x K
    (row, item) keys up among the chunk's relevant keys, and relevant counts come from
    the CSR row pointers, so no dense B x n_items truth mask is built or summed (on the
    Clothing-sized graph that mask's row sums cost more than the matrix product).

    A model that scores by the product of its ``score_embeddings()`` (the base class's
    ``full_sort_predict``, not overridden) gets its score chunks written into ONE buffer per pass
    (``torch.mm(..., out=)``, the same product): a fresh 4096 x 7050 float chunk is over glibc's
    mmap threshold, so each was mapped and page-faulted in again (about 134,000 faults per Baby
    valid pass, 17 % of the bare ranking's CPU time at 1 thread, benchmarks/probe_eval.py). On CPU
    the product is written in 256 x 512 tiles (``TILE_ROWS`` x ``TILE_COLS``) that stay in cache.
    """

    def __init__(
        self,
        data: InteractionData,
        topk: Sequence[int] = (10, 20, 50),
        metrics: Sequence[str] = ("recall", "ndcg", "precision", "map", "hit"),
        batch_size: int = 4096,
        device: str | torch.device = "cpu",
    ):
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
        if any(k <= 0 for k in topk):
            raise ValueError("every K must be positive")
        self.data = data
        self.topk = sorted(set(int(k) for k in topk))
        self.metrics = list(metrics)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self._train = data.train_matrix

    def _rows_per_chunk(self, split: str) -> int:
        return min(self.batch_size, self.data.eval_users(split).size)

    def _chunks(self, split: str) -> Iterator[tuple[np.ndarray, tuple, tuple]]:
        """(users, their train non-zeros, their relevant non-zeros) per chunk of users."""
        all_users = self.data.eval_users(split)
        truth = self.data.matrix(split)
        for start in range(0, all_users.size, self.batch_size):
            users = all_users[start : start + self.batch_size]
            yield users, _csr_rows_to_tensors(self._train, users), _csr_rows_to_tensors(truth, users)

    def _scorer(self, model: Scorer, n_rows: int):
        """``users -> scores [len(users), n_items]`` for one pass (see the class docstring)."""
        predict = model.full_sort_predict
        if getattr(predict, "__func__", None) is not Recommender.full_sort_predict:
            return predict  # the model's own scoring (overridden, or not a Recommender)
        users_e, items_e = model.score_embeddings()
        if users_e.dtype != torch.float32 or items_e.dtype != torch.float32 or users_e.device != items_e.device:
            return predict
        n_items = items_e.shape[0]
        buf = torch.empty(max(n_rows, 1) * n_items, dtype=torch.float32, device=items_e.device)
        items_t = items_e.T
        tiled = items_e.device.type == "cpu"

        def score(u: torch.Tensor) -> torch.Tensor:
            out = buf[: u.numel() * n_items].view(u.numel(), n_items)
            users = users_e[u.to(users_e.device)]
            if not tiled:
                return torch.mm(users, items_t, out=out)
            for r in range(0, users.shape[0], TILE_ROWS):
                for c in range(0, n_items, TILE_COLS):
                    torch.mm(users[r : r + TILE_ROWS], items_t[:, c : c + TILE_COLS],
                             out=out[r : r + TILE_ROWS, c : c + TILE_COLS])
            return out

        return score

    @torch.no_grad()
    def _ranked(self, score, users: np.ndarray, train_nz, k: int) -> torch.Tensor:
        u = torch.from_numpy(users).to(self.device)
        scores = score(u).float()
        if scores.shape != (users.size, self.data.n_items):
            raise RuntimeError(
                f"full_sort_predict returned shape {tuple(scores.shape)}, expected {(users.size, self.data.n_items)}"
            )
        rows, cols = train_nz
        scores[rows.to(scores.device), cols.to(scores.device)] = -torch.inf
        return torch.topk(scores, min(k, self.data.n_items), dim=1).indices.cpu()

    @torch.no_grad()
    def evaluate(self, model: Scorer, split: str = "valid") -> dict[str, float]:
        """Mean of every ``metric@K`` over the split's users, e.g. ``{'recall@20': 0.07, ...}``."""
        users, per_user = self.evaluate_per_user(model, split)
        n = max(users.size, 1)
        return {key: float(v.sum() / n) if users.size else 0.0 for key, v in per_user.items()}

    @torch.no_grad()
    def evaluate_per_user(self, model: Scorer, split: str = "valid") -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(evaluated users, ``metric@K`` -> per-user values): the input of paired significance tests."""
        if getattr(model, "training", False):  # already in eval mode: keep its cached representations
            model.eval()
        kmax = max(self.topk)
        parts: dict[str, list[torch.Tensor]] = {f"{m}@{k}": [] for m in self.metrics for k in self.topk}
        all_users = []
        score = self._scorer(model, self._rows_per_chunk(split))
        for users, train_nz, truth_nz in self._chunks(split):
            top = self._ranked(score, users, train_nz, kmax)
            hits = _hit_matrix(top, truth_nz, self.data.n_items)
            n_rel = torch.bincount(truth_nz[0], minlength=users.size)
            if hits.shape[1] < kmax:  # fewer items than K: pad with misses
                hits = torch.nn.functional.pad(hits, (0, kmax - hits.shape[1]))
            for m in self.metrics:
                fn = METRICS[m].fn
                for k in self.topk:
                    parts[f"{m}@{k}"].append(fn(hits, n_rel, k))
            all_users.append(users)
        if not all_users:
            return np.zeros(0, dtype=np.int64), {key: np.zeros(0) for key in parts}
        return np.concatenate(all_users), {key: torch.cat(v).numpy() for key, v in parts.items()}

    @torch.no_grad()
    def top_items(self, model: Scorer, split: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(users, their top-k item ids) for every evaluated user of ``split``, train items masked."""
        if getattr(model, "training", False):  # already in eval mode: keep its cached representations
            model.eval()
        all_users, all_top = [], []
        score = self._scorer(model, self._rows_per_chunk(split))
        for users, train_nz, _ in self._chunks(split):
            all_users.append(users)
            all_top.append(self._ranked(score, users, train_nz, k).numpy())
        return np.concatenate(all_users), np.concatenate(all_top)
