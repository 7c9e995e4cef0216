"""View importance from a feature store (the paper's RQ4 / Figure 5) and the SA weight distribution.

Per item (with a real image), the views are ranked by their cosine similarity to the
image, descending; ties keep the store's view order (stable sort). ``counts[v, r]``
is how many items give view ``v`` rank ``r + 1``. Following the paper, rank score 1
goes to the most similar view and higher scores to less similar ones, and the
importance of a view is ``sum_r (r + 1) * counts[v, r]`` -- the *smaller* the sum, the
more often the view leads. The SA weights are ``softmax_v(sim / tau)`` as the fusion
computes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cliper.errors import ConfigError, DataError

WEIGHT_RULE = "weighted sum = sum over ranks r of r * count (rank 1 = highest similarity); smaller = more important"


@dataclass
class ViewImportance:
    view_names: list[str]
    counts: np.ndarray  # [V, V] int: view x rank
    weighted_sum: np.ndarray  # [V] int
    n_items: int  # items ranked (real image)
    n_excluded: int  # items without a real image

    @property
    def order(self) -> list[str]:
        """Views from most to least important (smallest weighted sum first; ties by view order)."""
        idx = np.argsort(self.weighted_sum, kind="stable")
        return [self.view_names[i] for i in idx]

    def rows(self) -> list[dict[str, Any]]:
        V = len(self.view_names)
        out = []
        rank_of = {name: i + 1 for i, name in enumerate(self.order)}
        for v, name in enumerate(self.view_names):
            row: dict[str, Any] = {"view": name}
            row.update({f"rank_{r + 1}": int(self.counts[v, r]) for r in range(V)})
            row["weighted_sum"] = int(self.weighted_sum[v])
            row["mean_rank"] = float(self.weighted_sum[v] / max(self.n_items, 1))
            row["importance_order"] = rank_of[name]
            out.append(row)
        return out


def rank_views(similarity: np.ndarray) -> np.ndarray:
    """[N, V] similarities -> [N, V] rank (1 = most similar) of each view; ties by view order."""
    sim = np.nan_to_num(np.asarray(similarity, dtype=np.float64), nan=-np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")  # order[i, r] = view at rank r+1
    ranks = np.empty_like(order)
    rows = np.arange(sim.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, sim.shape[1] + 1)[None, :]
    return ranks


def view_importance(similarity: np.ndarray, view_names: Sequence[str], mask: np.ndarray | None = None) -> ViewImportance:
    sim = np.asarray(similarity)
    if sim.ndim != 2 or sim.shape[1] != len(view_names):
        raise ConfigError(f"similarity must be [N, V={len(view_names)}], got {sim.shape}")
    keep = np.ones(sim.shape[0], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    sim = sim[keep]
    V = len(view_names)
    ranks = rank_views(sim)
    counts = np.zeros((V, V), dtype=np.int64)
    for v in range(V):
        counts[v] = np.bincount(ranks[:, v] - 1, minlength=V)[:V]
    weighted = (counts * np.arange(1, V + 1)[None, :]).sum(axis=1)
    return ViewImportance(list(view_names), counts, weighted, int(sim.shape[0]), int((~keep).sum()))


def sa_weights(similarity: np.ndarray, tau: float) -> np.ndarray:
    """softmax over views of sim / tau (the SA fusion's weights), [N, V]."""
    if tau <= 0:
        raise ConfigError(f"tau must be positive, got {tau}")
    z = np.nan_to_num(np.asarray(similarity, dtype=np.float64), nan=0.0) / tau
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def weight_summary(weights: np.ndarray, view_names: Sequence[str]) -> list[dict[str, Any]]:
    top = weights.argmax(axis=1) if weights.size else np.array([], dtype=int)
    out = []
    for v, name in enumerate(view_names):
        w = weights[:, v]
        q = np.quantile(w, [0.0, 0.25, 0.5, 0.75, 1.0]) if w.size else [np.nan] * 5
        out.append({"view": name, "mean": float(w.mean()) if w.size else np.nan,
                    "std": float(w.std()) if w.size else np.nan, "min": float(q[0]), "p25": float(q[1]),
                    "median": float(q[2]), "p75": float(q[3]), "max": float(q[4]),
                    "share_top": float((top == v).mean()) if w.size else np.nan})
    return out


def analyze_store(store_path: str | Path, output: str | Path, tau: float = 0.1,
                  views: Sequence[str] | None = None) -> dict[str, Any]:
    """Write view_importance.{csv,md,png}, attention_weights.{csv,md,png} and summary.json for a store."""
    import json

    from cliper.experiments import plots
    from cliper.experiments.tables import text_table, write_csv, write_text
    from cliper.features.store import FeatureStore

    store = FeatureStore.open(store_path)
    names = store.view_names
    chosen = list(views) if views else names
    unknown = [v for v in chosen if v not in names]
    if unknown:
        raise ConfigError(f"views {unknown} not in the feature store {store_path} (has {names})")
    idx = [names.index(v) for v in chosen]
    sim = np.asarray(store.similarity)[:, idx]
    mask = np.asarray(store.image_mask, dtype=bool)
    if not mask.any():
        raise DataError("no item has a real image (image_mask is all False): nothing to rank", store_path)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    imp = view_importance(sim, chosen, mask)
    rows = imp.rows()
    write_csv(rows, out / "view_importance.csv")
    counts_note = (f"{imp.n_items} items ranked ({imp.n_excluded} without a real image left out). "
                   f"Ties keep the view order of the store. {WEIGHT_RULE}.")
    write_text(f"# View importance: {store_path}\n\n```\n{text_table(rows)}\n```\n\n{counts_note}\n\n"
               f"Order (most important first): {', '.join(imp.order)}\n", out / "view_importance.md")
    plots.view_rank_heatmap(imp.counts, imp.weighted_sum, chosen, out / "view_importance.png",
                            title=f"view rank by similarity ({imp.n_items} items); last row: weighted sum (smaller = more important)")
    w = sa_weights(sim[mask], tau)
    summary = weight_summary(w, chosen)
    write_csv(summary, out / "attention_weights.csv")
    write_text(f"# SA attention weights softmax(sim / {tau}): {store_path}\n\n```\n{text_table(summary)}\n```\n\n"
               f"share_top: fraction of items whose largest weight is on that view. Uniform weight: {1 / len(chosen):.4f}.\n",
               out / "attention_weights.md")
    plots.attention_distribution(w, chosen, out / "attention_weights.png", tau)
    doc = {"store": str(store_path), "tau": tau, "views": chosen, "n_items": imp.n_items,
           "n_excluded": imp.n_excluded, "order": imp.order, "weight_rule": WEIGHT_RULE,
           "counts": imp.counts.tolist(), "weighted_sum": imp.weighted_sum.tolist(),
           "attention_mean": [r["mean"] for r in summary]}
    (out / "summary.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return doc
