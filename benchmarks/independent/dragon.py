"""Independent DRAGON (Zhou et al., ECAI 2023, "Enhancing Dyadic Relations with Homogeneous Graphs
for Multimodal Recommendation"), written for the side-by-side check from the paper and from reading
the authors' code as MMRec ships it (``src/models/dragon.py``, ``DRAGON.yaml``, the authors'
``tools/generate-u-u-matrix.py``); shares no code with cliper's model.

Per modality m: x_m = normalize([P_m ; W2 leaky_relu(W1 f_m + b1) + b2]) (P_m xavier-normal user
preferences, W1/W2 nn.Linear default init), x^_m = x_m + A x_m + A^2 x_m on the symmetric-normalised
user-item graph. Users: [w_uv x^_v,u || w_ut x^_t,u] with w_u a softmax of a xavier-normal
(U, 2, 1) draw, then trained freely; items: [x^_v,i || x^_t,i]. Items add S h (S = 0.1 S_v + 0.9 S_t,
cosine kNN with self, k = 10, D^-1/2 A D^-1/2 by row sums, built once from the raw features); users
add the softmax(count)-weighted sum of their top-40 co-interacting users' fused rows. Loss: log2
BPR mean + reg * (mean(P_v[u]^2) + mean(P_t[u]^2) + mean(w^2)).

Knobs for cliper's documented decisions (defaults follow cliper):
``pad_users`` 1 = the code's per-epoch re-sampled padding of users with < 40 co-users;
``stale_scores`` 1 = rank with the last training batch's embeddings (the code's ``result_embed``);
``tie_break`` "index" (smaller user index first among equal counts) or "random" (seeded shuffle).
log2 BPR is computed as logsigmoid / ln 2 (the code's log2(sigmoid) equals it except at underflow).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"dim": 64, "hidden_mult": 4, "n_ui_layers": 2, "n_mm_layers": 1, "knn_k": 10,
            "mm_image_weight": 0.1, "user_k": 40, "reg_weight": 1e-4, "pad_users": 0, "stale_scores": 0,
            "tie_break": "index"}


def _to_torch(m: sp.spmatrix) -> torch.Tensor:
    m = m.tocoo()
    idx = torch.from_numpy(np.vstack([m.row, m.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(m.data.astype(np.float32)), m.shape,
                                   check_invariants=True).coalesce()


def ui_graph(train: sp.csr_matrix) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph [[0, R], [R^T, 0]] (PyG degree of the edge sources)."""
    a = sp.bmat([[None, train], [train.T, None]]).tocoo()
    deg = np.asarray(a.sum(1)).ravel()
    inv = np.zeros_like(deg, dtype=np.float64)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    vals = inv[a.row] * inv[a.col]
    return _to_torch(sp.coo_matrix((vals, (a.row, a.col)), shape=a.shape))


def knn_graph(feat: np.ndarray, k: int) -> sp.csr_matrix:
    """Cosine top-k (the item itself included) with weight 1, normalised by row sums on both sides."""
    x = torch.from_numpy(feat).double()
    x = x / x.norm(dim=1, keepdim=True)
    sim = x @ x.T
    idx = torch.topk(sim, k, dim=1).indices.numpy()
    n = feat.shape[0]
    rows = np.repeat(np.arange(n), k)
    a = sp.csr_matrix((np.ones(rows.size), (rows, idx.ravel())), shape=(n, n))
    r = np.asarray(a.sum(1)).ravel() + 1e-7
    d = sp.diags(r ** -0.5)
    return (d @ a @ d).tocsr()


def co_users(train: sp.csr_matrix) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per user: co-interacting users (shared train items > 0) sorted by count desc, index asc."""
    c = (train @ train.T).tocsr().astype(np.float64)
    c.setdiag(0)
    c.eliminate_zeros()
    out = []
    for u in range(c.shape[0]):
        cols, vals = c.indices[c.indptr[u]: c.indptr[u + 1]], c.data[c.indptr[u]: c.indptr[u + 1]]
        order = np.lexsort((cols, -vals))
        out.append((cols[order], vals[order]))
    return out


class Model(nn.Module):
    def __init__(self, inputs, seed, dim=64, hidden_mult=4, n_ui_layers=2, n_mm_layers=1, knn_k=10,
                 mm_image_weight=0.1, user_k=40, reg_weight=1e-4, pad_users=0, stale_scores=0, tie_break="index"):
        super().__init__()
        self.n_users, self.n_items = inputs.n_users, inputs.n_items
        self.dim, self.n_ui, self.n_mm = int(dim), int(n_ui_layers), int(n_mm_layers)
        self.reg, self.k = float(reg_weight), int(user_k)
        self.pad, self.stale = bool(int(pad_users)), bool(int(stale_scores))
        self.rng = np.random.default_rng(seed + 7919)
        feats = inputs.modalities()
        self.mods = list(feats)
        self.feat = {m: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for m, x in feats.items()}
        self.pref = nn.ParameterDict()
        self.mlp1, self.mlp2 = nn.ModuleDict(), nn.ModuleDict()
        for m, x in feats.items():
            p = torch.empty(self.n_users, self.dim)
            nn.init.xavier_normal_(p)
            self.pref[m] = nn.Parameter(p)
            self.mlp1[m] = nn.Linear(x.shape[1], int(hidden_mult) * self.dim)
            self.mlp2[m] = nn.Linear(int(hidden_mult) * self.dim, self.dim)
        if len(self.mods) == 2:
            w = torch.empty(self.n_users, 2, 1)
            nn.init.xavier_normal_(w)
            self.weight_u = nn.Parameter(F.softmax(w, dim=1))
        else:
            self.weight_u = None
        self.adj = ui_graph(inputs.train)
        graphs = {m: knn_graph(x, int(knn_k)) for m, x in feats.items()}
        if len(graphs) == 2:
            s = mm_image_weight * graphs["image"] + (1.0 - mm_image_weight) * graphs["text"]
        else:
            s = next(iter(graphs.values()))
        self.mm_adj = _to_torch(s)
        self.neigh = co_users(inputs.train)
        if tie_break == "random":  # seeded shuffle inside each run of equal counts
            shuffled = []
            for cols, vals in self.neigh:
                key = self.rng.random(cols.size)
                order = np.lexsort((key, -vals))
                shuffled.append((cols[order], vals[order]))
            self.neigh = shuffled
        elif tie_break != "index":
            raise ValueError(f"tie_break must be 'index' or 'random', not {tie_break!r}")
        self.user_graph = self._user_graph()
        self.result = None

    def _user_graph(self) -> torch.Tensor:
        rows, cols, vals = [], [], []
        for u, (nb, cnt) in enumerate(self.neigh):
            nb, cnt = nb[: self.k], cnt[: self.k]
            if nb.size == 0:
                continue
            if self.pad and nb.size < self.k:
                extra = self.rng.integers(0, nb.size, self.k - nb.size)
                nb, cnt = np.concatenate([nb, nb[extra]]), np.concatenate([cnt, cnt[extra]])
            w = np.exp(cnt - cnt.max())
            w /= w.sum()
            rows.append(np.full(nb.size, u))
            cols.append(nb)
            vals.append(w)
        r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        # duplicates (padding) are summed, which is what gathering them k times and weighting does
        return _to_torch(sp.coo_matrix((v, (r, c)), shape=(self.n_users, self.n_users)))

    def pre_epoch(self):
        if self.pad:
            self.user_graph = self._user_graph()

    def _modality(self, m):
        items = self.mlp2[m](F.leaky_relu(self.mlp1[m](self.feat[m])))
        x = F.normalize(torch.cat([self.pref[m], items]), dim=1)
        out, h = x, x
        for _ in range(self.n_ui):
            h = torch.sparse.mm(self.adj, h)
            out = out + h
        return out

    def propagate(self):
        reps = [self._modality(m) for m in self.mods]
        if len(reps) == 2:
            u = torch.cat([self.weight_u[:, 0] * reps[0][: self.n_users],
                           self.weight_u[:, 1] * reps[1][: self.n_users]], dim=1)
            i = torch.cat([r[self.n_users:] for r in reps], dim=1)
        else:
            u, i = reps[0][: self.n_users], reps[0][self.n_users:]
        h = i
        for _ in range(self.n_mm):
            h = torch.sparse.mm(self.mm_adj, h)
        return u + torch.sparse.mm(self.user_graph, u), i + h

    def loss(self, users, pos, neg):
        u, i = self.propagate()
        if self.stale:
            self.result = (u.detach(), i.detach())
        ue = u[users]
        x = (ue * i[pos]).sum(1) - (ue * i[neg]).sum(1)
        bpr = -(F.logsigmoid(x) / math.log(2.0)).mean()
        reg = sum((self.pref[m][users] ** 2).mean() for m in self.mods)
        if self.weight_u is not None:
            reg = reg + (self.weight_u ** 2).mean()
        return bpr + self.reg * reg

    def scores(self, users):
        u, i = self.result if (self.stale and self.result is not None) else self.propagate()
        return u[users] @ i.T
