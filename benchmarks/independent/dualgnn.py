"""Independent DualGNN (Wang et al., IEEE TMM 2021), written from the paper and from reading
MMRec's models/dualgnn.py and preprocessing/dualgnn-gen-u-u-matrix.py; shares no code with cliper.

Per modality: item features -> Linear(d, 4*dim) -> LeakyReLU -> Linear(4*dim, dim) (PyTorch's
default init, MMRec calls no init hook), users a xavier-normal preference table; rows
L2-normalised, x + Ax + A^2x on the symmetric-normalised user-item graph. Users fuse modalities
with per-user weights (xavier-normal [U, 2, 1], softmax over the modalities once at init, then
free); the fused user vectors are summed over the user co-occurrence graph (first k of each
user's neighbours by shared-train-item count, weights the softmax of the counts) and added.
Items are image + text. Loss -mean log2 sigmoid(pos - neg) + reg_weight x [mean(p_img[u]^2) +
mean(p_txt[u]^2) + mean(weight_u^2) + mean(weight_i^2)] (weight_i: MMRec's unused item fusion
weights, kept only for that term).

Switches (1 = MMRec's behaviour, 0 = cliper's documented decision):
- pad_resample: a user with fewer than k neighbours gets its list padded to k by re-drawing
  among its own entries, anew every epoch (MMRec's topk_sample); 0: each neighbour once.
- reference_fusion: MMRec's in-place ``representation += t_rep`` aliases the image output, so
  users get w_v (img + txt) + w_t txt; 0: the paper's w_v img + w_t txt.
- score_last_batch: MMRec ranks with the embeddings of the last training batch (computed before
  that batch's optimiser step); 0: recomputed from the current weights.
Ties in the co-occurrence counts go to the smaller user index (MMRec's torch.topk leaves them
unspecified; cliper documents this rule)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"dim": 64, "hidden_mult": 4, "k": 40, "reg_weight": 1e-4,
            "pad_resample": 1, "reference_fusion": 1, "score_last_batch": 1}


def sym_norm_graph(train: sp.csr_matrix) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph, nodes = users then items."""
    a = sp.bmat([[None, train], [train.T, None]]).tocoo()
    deg = np.asarray(a.sum(1)).ravel()
    inv = np.zeros_like(deg, dtype=np.float64)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    vals = (inv[a.row] * inv[a.col]).astype(np.float32)
    return torch.sparse_coo_tensor(np.vstack([a.row, a.col]), vals, a.shape).coalesce()


def cooccurrence_lists(train: sp.csr_matrix, top: int = 200) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per user: neighbours sharing >= 1 train item, by count descending (ties: smaller index)."""
    b = (train > 0).astype(np.float64)
    c = (b @ b.T).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    out = []
    for u in range(c.shape[0]):
        cols, cnt = c.indices[c.indptr[u]:c.indptr[u + 1]], c.data[c.indptr[u]:c.indptr[u + 1]]
        order = np.lexsort((cols, -cnt))[:top]
        out.append((cols[order].astype(np.int64), cnt[order].astype(np.float32)))
    return out


class Branch(nn.Module):
    def __init__(self, feats: np.ndarray, n_users: int, dim: int, hidden: int):
        super().__init__()
        self.register_buffer("x", torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)))
        self.pref = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, dim)))
        self.fc1 = nn.Linear(feats.shape[1], hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, adj):
        z = F.normalize(torch.cat([self.pref, self.fc2(F.leaky_relu(self.fc1(self.x)))]), dim=1)
        h1 = torch.sparse.mm(adj, z)
        h2 = torch.sparse.mm(adj, h1)
        return z + h1 + h2


class Model(nn.Module):
    def __init__(self, inputs, seed, dim=64, hidden_mult=4, k=40, reg_weight=1e-4, pad_resample=1,
                 reference_fusion=1, score_last_batch=1):
        super().__init__()
        if inputs.image is None or inputs.text is None:
            raise ValueError("this independent DualGNN expects both image and text features")
        dim, self.k, self.reg = int(dim), int(k), float(reg_weight)
        self.n_users = inputs.n_users
        self.pad, self.ref_fusion, self.last_batch = bool(pad_resample), bool(reference_fusion), bool(score_last_batch)
        self.adj = sym_norm_graph(inputs.train)
        self.img = Branch(inputs.image, inputs.n_users, dim, int(hidden_mult) * dim)
        self.txt = Branch(inputs.text, inputs.n_users, dim, int(hidden_mult) * dim)
        self.weight_u = nn.Parameter(F.softmax(nn.init.xavier_normal_(torch.empty(inputs.n_users, 2, 1)), dim=1))
        self.weight_i = nn.Parameter(F.softmax(nn.init.xavier_normal_(torch.empty(inputs.n_items, 2, 1)), dim=1))
        self.lists = cooccurrence_lists(inputs.train)
        self.rng = np.random.default_rng(seed + 7919)
        self.nb_idx = self.nb_w = None
        self._last = None

    def pre_epoch(self):
        """The [U, k] neighbour index and weights (MMRec's topk_sample, once per epoch)."""
        k = self.k
        idx = np.zeros((self.n_users, k), dtype=np.int64)
        w = np.zeros((self.n_users, k), dtype=np.float32)
        for u, (nb, cnt) in enumerate(self.lists):
            nb, cnt = list(nb[:k]), list(cnt[:k])
            if not nb:
                continue  # no neighbour: index 0, weight 0
            if len(nb) < k and self.pad:
                while len(nb) < k:  # MMRec draws from the growing list
                    j = int(self.rng.integers(0, len(nb)))
                    nb.append(nb[j])
                    cnt.append(cnt[j])
            n = len(nb)
            idx[u, :n] = nb
            w[u, :n] = torch.softmax(torch.tensor(cnt, dtype=torch.float32), 0).numpy()
        self.nb_idx, self.nb_w = torch.from_numpy(idx), torch.from_numpy(w)

    def embed(self):
        if self.nb_idx is None:
            self.pre_epoch()
        v, t = self.img(self.adj), self.txt(self.adj)
        item = v[self.n_users:] + t[self.n_users:]
        uv, ut = v[: self.n_users], t[: self.n_users]
        if self.ref_fusion:
            uv = uv + ut
        user = self.weight_u[:, 0] * uv + self.weight_u[:, 1] * ut
        agg = (self.nb_w.unsqueeze(2) * user[self.nb_idx]).sum(1)
        return user + agg, item

    def loss(self, u, p, n):
        user, item = self.embed()
        self._last = (user.detach(), item.detach())
        ue = user[u]
        d = (ue * item[p]).sum(1) - (ue * item[n]).sum(1)
        bpr = -torch.log2(torch.sigmoid(d)).mean()
        reg = ((self.img.pref[u] ** 2).mean() + (self.txt.pref[u] ** 2).mean()
               + (self.weight_u ** 2).mean() + (self.weight_i ** 2).mean())
        return bpr + self.reg * reg

    def scores(self, users):
        if self.last_batch and self._last is not None:
            user, item = self._last
        else:
            user, item = self.embed()
        return user[users] @ item.T
