"""Top-K ranking metrics over a hit matrix.

Every metric takes ``hits`` (B x K bool: is the item at rank r relevant) and ``n_rel``
(B: number of relevant items of each user) and returns the per-user value at cut-off
``k``. Definitions (cliper-method.md section 4):

- Recall@K    = |hits in top K| / |relevant|
- Precision@K = |hits in top K| / K
- Hit@K       = 1 if any hit in top K
- NDCG@K      = sum_r hit_r / log2(r + 1)  /  sum_{r <= min(|relevant|, K)} 1 / log2(r + 1)
- MAP@K       = sum_r Precision@r * hit_r  /  min(|relevant|, K)
(r is the 1-based rank.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from cliper.errors import ConfigError


def _discounts(k: int, device: torch.device) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float64))


def recall(hits: torch.Tensor, n_rel: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].sum(1).double() / n_rel.double()


def precision(hits: torch.Tensor, n_rel: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].sum(1).double() / k


def hit(hits: torch.Tensor, n_rel: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].any(1).double()


def ndcg(hits: torch.Tensor, n_rel: torch.Tensor, k: int) -> torch.Tensor:
    disc = _discounts(k, hits.device)
    dcg = (hits[:, :k].double() * disc).sum(1)
    ideal_cum = torch.cumsum(disc, 0)
    idcg = ideal_cum[torch.clamp(n_rel, max=k).long() - 1]
    return dcg / idcg


def average_precision(hits: torch.Tensor, n_rel: torch.Tensor, k: int) -> torch.Tensor:
    h = hits[:, :k].double()
    ranks = torch.arange(1, k + 1, device=h.device, dtype=torch.float64)
    prec_at_r = torch.cumsum(h, 1) / ranks
    return (prec_at_r * h).sum(1) / torch.clamp(n_rel, max=k).double()


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
    higher_is_better: bool = True


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("recall", recall),
        Metric("ndcg", ndcg),
        Metric("precision", precision),
        Metric("map", average_precision),
        Metric("hit", hit),
    )
}


def parse_metric(spec: str) -> tuple[str, int]:
    """``'recall@20'`` -> ``('recall', 20)``; unknown names and bad K are config errors."""
    name, sep, k = spec.lower().partition("@")
    if not sep or name not in METRICS:
        raise ConfigError(f"unknown metric {spec!r}; use NAME@K with NAME in {sorted(METRICS)}")
    try:
        kk = int(k)
    except ValueError:
        raise ConfigError(f"metric {spec!r}: K must be a positive integer") from None
    if kk <= 0:
        raise ConfigError(f"metric {spec!r}: K must be a positive integer")
    return name, kk
