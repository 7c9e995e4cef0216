"""Held-out cross-modal retrieval: image-to-text and text-to-image Recall@K, with chance level.

Items sharing an identical text (e.g. two "Blue Ball" titles) are indistinguishable by
text, so a retrieved text counts as correct when it equals the item's own text; the
chance level is computed exactly for the same rule.
"""

from __future__ import annotations

from math import comb

import numpy as np
import torch


def _chance(group_sizes: np.ndarray, n: int, k: int) -> float:
    """Expected hit rate of a random ranking: 1 - C(n-m, k) / C(n, k), averaged over items."""
    k = min(k, n)
    return float(np.mean([1.0 - comb(n - int(m), k) / comb(n, k) for m in group_sizes]))


def retrieval_metrics(
    image_emb: torch.Tensor, text_emb: torch.Tensor, text_keys: list[str], ks: tuple[int, ...] = (1, 5)
) -> dict[str, float]:
    """``i2t_R@k``, ``t2i_R@k`` and ``chance_R@k`` for L2-normalised row-aligned embeddings."""
    n = image_emb.shape[0]
    _, group = np.unique(np.array(text_keys, dtype=object), return_inverse=True)
    group = torch.as_tensor(group)
    same = group[:, None] == group[None, :]  # same[i, j]: item j's text equals item i's
    sim = image_emb @ text_emb.T
    out: dict[str, float] = {"n": float(n)}
    sizes = same.sum(dim=1).numpy()
    for k in ks:
        kk = min(k, n)
        top_t = sim.topk(kk, dim=1).indices  # texts for each image
        out[f"i2t_R@{k}"] = float(same.gather(1, top_t).any(dim=1).float().mean())
        top_i = sim.T.topk(kk, dim=1).indices  # images for each text
        out[f"t2i_R@{k}"] = float(same.gather(1, top_i).any(dim=1).float().mean())
        out[f"chance_R@{k}"] = _chance(sizes, n, kk)
    return out
