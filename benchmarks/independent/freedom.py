"""Independent FREEDOM (Zhou & Shen, ACM MM 2023), written from the paper and from reading MMRec's
``models/freedom.py`` for the side-by-side check; shares no code with cliper's model.

- frozen item-item graph: per modality cosine kNN (the item itself included, binary), normalised
  D^-1/2 A D^-1/2 by row degrees, mixed ``w * S_image + (1 - w) * S_text``; built once;
- denoised user-item graph: before every epoch ``int(E * (1 - dropout))`` edges are drawn without
  replacement with probability proportional to 1/sqrt(d_u d_i) of the full graph and re-normalised
  on the kept graph's degrees; scoring uses the full normalised graph;
- item representation = LightGCN mean over ``n_ui_layers`` + ``n_mm_layers`` convolutions of the
  item ID table on S; loss = BPR + reg_weight * (BPR of u against the projected text features +
  the same for image), every item projected, bias included, as MMRec; no L2 term.

``train_features`` (default 0, cliper's default) says whether the raw feature tables are trained
(MMRec: ``from_pretrained(freeze=False)``). ``mm_source`` builds S from other arrays than the
model's features to measure what a stale cached ``mm_adj`` does: ``same`` (default), ``random``
(seeded noise of the same shapes: a cache left from other features), ``resampled`` (the harness's
svd features again under another seed: the same train signal, another projection and noise, as a
graph from raw instead of fused text would be), ``swap`` (image and text swapped), ``text_only`` /
``image_only`` (one modality's graph alone)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"embedding_dim": 64, "feat_embed_dim": 64, "n_ui_layers": 2, "n_mm_layers": 1, "knn_k": 10,
            "mm_image_weight": 0.1, "dropout": 0.8, "reg_weight": 1e-4, "train_features": 0,
            "mm_source": "same", "mm_seed": 12345}


def _sparse(rows, cols, vals, shape) -> torch.Tensor:
    idx = torch.as_tensor(np.vstack([rows, cols]), dtype=torch.long)
    return torch.sparse_coo_tensor(idx, torch.as_tensor(vals, dtype=torch.float32), shape).coalesce()


def bipartite_values(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> np.ndarray:
    """1/sqrt(d_u d_i) per edge of a user-item edge list (degrees of that list, +1e-7 as MMRec)."""
    du = np.bincount(users, minlength=n_users).astype(np.float64) + 1e-7
    di = np.bincount(items, minlength=n_items).astype(np.float64) + 1e-7
    return (1.0 / np.sqrt(du[users] * di[items])).astype(np.float32)


def knn_graph(x: np.ndarray, k: int) -> sp.csr_matrix:
    """Cosine kNN rows (self included), every kept entry 1/sqrt(k * k) = 1/k (row degrees)."""
    t = torch.as_tensor(x, dtype=torch.float32)
    t = t / t.norm(dim=1, keepdim=True)
    sim = t @ t.T
    nbr = torch.topk(sim, k, dim=1).indices.numpy()
    n = x.shape[0]
    rows = np.repeat(np.arange(n), k)
    deg = np.full(n, k, dtype=np.float64) + 1e-7
    vals = 1.0 / np.sqrt(deg[rows] * deg[nbr.ravel()])
    return sp.csr_matrix((vals, (rows, nbr.ravel())), shape=(n, n))


class Model(nn.Module):
    def __init__(self, inputs, seed, embedding_dim=64, feat_embed_dim=64, n_ui_layers=2, n_mm_layers=1, knn_k=10,
                 mm_image_weight=0.1, dropout=0.8, reg_weight=1e-4, train_features=0, mm_source="same",
                 mm_seed=12345):
        super().__init__()
        self.n_users, self.n_items = inputs.n_users, inputs.n_items
        self.n_ui, self.n_mm, self.dropout, self.reg = int(n_ui_layers), int(n_mm_layers), dropout, reg_weight
        self.user = nn.Parameter(torch.empty(self.n_users, int(embedding_dim)))
        self.item = nn.Parameter(torch.empty(self.n_items, int(embedding_dim)))
        nn.init.xavier_uniform_(self.user)
        nn.init.xavier_uniform_(self.item)
        self.feats = nn.ParameterDict()
        self.trs = nn.ModuleDict()
        for m, x in inputs.modalities().items():
            self.feats[m] = nn.Parameter(torch.as_tensor(x, dtype=torch.float32).clone(),
                                         requires_grad=bool(train_features))
            self.trs[m] = nn.Linear(x.shape[1], int(feat_embed_dim))

        # user-item graph: full normalised adjacency and the per-edge pruning weights
        coo = inputs.train.tocoo()
        self.eu, self.ei = coo.row.astype(np.int64), coo.col.astype(np.int64)
        self.edge_w = torch.as_tensor(bipartite_values(self.eu, self.ei, self.n_users, self.n_items))
        self.full_adj = self._ui_adj(self.eu, self.ei)
        self.masked_adj = self.full_adj

        # item-item graph
        src = self._mm_sources(inputs, mm_source, mm_seed)
        s = None
        for m, x in src.items():
            g = knn_graph(x, int(knn_k))
            w = 1.0 if len(src) == 1 else (mm_image_weight if m == "image" else 1.0 - mm_image_weight)
            s = w * g if s is None else s + w * g
        s = s.tocoo()
        self.mm_adj = _sparse(s.row, s.col, s.data, s.shape)

    @staticmethod
    def _mm_sources(inputs, how, seed):
        mods = inputs.modalities()
        if how == "same":
            return mods
        if how == "swap":  # each graph from the other modality's arrays
            return {"image": mods["text"], "text": mods["image"]}
        if how == "resampled":
            from harness import svd_features  # the harness, not cliper

            return {m: svd_features(inputs.train, x.shape[1], 32, 1.0, int(seed) + j)
                    for j, (m, x) in enumerate(mods.items())}
        if how == "random":
            rng = np.random.default_rng(int(seed))
            return {m: rng.standard_normal(x.shape, dtype=np.float32) for m, x in mods.items()}
        if how in ("text_only", "image_only"):
            m = how.split("_")[0]
            return {m: mods[m]}
        raise ValueError(f"mm_source must be same, resampled, swap, random, text_only or image_only, not {how!r}")

    def _ui_adj(self, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
        v = bipartite_values(users, items, self.n_users, self.n_items)
        n = self.n_users + self.n_items
        rows = np.concatenate([users, items + self.n_users])
        cols = np.concatenate([items + self.n_users, users])
        return _sparse(rows, cols, np.concatenate([v, v]), (n, n))

    def pre_epoch(self):
        if self.dropout <= 0:
            self.masked_adj = self.full_adj
            return
        keep = int(self.edge_w.numel() * (1.0 - self.dropout))
        idx = torch.multinomial(self.edge_w, keep, replacement=False).numpy()
        self.masked_adj = self._ui_adj(self.eu[idx], self.ei[idx])

    def propagate(self, adj):
        h = self.item
        for _ in range(self.n_mm):
            h = torch.sparse.mm(self.mm_adj, h)
        e = torch.cat([self.user, self.item])
        layers = [e]
        for _ in range(self.n_ui):
            e = torch.sparse.mm(adj, e)
            layers.append(e)
        out = torch.stack(layers, 1).mean(1)
        return out[: self.n_users], out[self.n_users:] + h

    @staticmethod
    def _bpr(u, p, n):
        return -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()

    def loss(self, u, p, n):
        us, it = self.propagate(self.masked_adj)
        loss = self._bpr(us[u], it[p], it[n])
        align = 0.0
        for m in ("text", "image"):
            if m in self.feats:
                f = self.trs[m](self.feats[m])
                align = align + self._bpr(us[u], f[p], f[n])
        return loss + self.reg * align

    def scores(self, users):
        us, it = self.propagate(self.full_adj)
        return us[users] @ it.T


def curves_table(path: str, epochs=(5, 10, 25, 50)) -> str:
    """Valid R@20 at equal epochs (mean +- SE over the seeds of a side_by_side result JSON)."""
    import json
    import math

    rows = json.loads(open(path, encoding="utf-8").read())["rows"]
    sides = [s for s in ("cliper", "independent") if s in rows[0]]
    out = []
    for e in epochs:
        cells = []
        for s in sides:
            v = np.array([r[s]["valid_curve"][e - 1] for r in rows if len(r[s]["valid_curve"]) >= e])
            se = v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else 0.0
            cells.append(f"{s} {v.mean():.4f} +- {se:.4f} (n={v.size})")
        if len(sides) == 2:
            both = [(r["cliper"]["valid_curve"], r["independent"]["valid_curve"]) for r in rows]
            d = np.array([a[e - 1] - b[e - 1] for a, b in both if min(len(a), len(b)) >= e])
            cells.append(f"paired diff {d.mean():+.4f} +- {d.std(ddof=1) / math.sqrt(d.size) if d.size > 1 else 0:.4f}")
        out.append(f"epoch {e}: " + "; ".join(cells))
    return "\n".join(out)


if __name__ == "__main__":  # python benchmarks/independent/freedom.py RESULT.json [EPOCH ...]
    import sys

    print(curves_table(sys.argv[1], tuple(int(a) for a in sys.argv[2:]) or (5, 10, 25, 50)))
