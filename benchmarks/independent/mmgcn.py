"""Independent MMGCN (Wei et al., ACM MM 2019) following MMRec's ``mmgcn.py``: one three-layer GCN
per modality over the user-item graph (both edge directions, neighbour mean, no self-loops),
node inputs = [user preference table; item features (image through Linear(d, 256), text raw)]
row-normalised; each layer h = lrelu(mean_nbrs(x W)), x_hat = lrelu(L x) + id, x = lrelu(G [h; x_hat]);
modalities averaged; BPR as -mean(log(sigmoid(pos - neg))). The ID table and preference tables
are fixed xavier-normal tensors outside the optimiser (MMRec), so the L2 term is a constant.
``stale_scores=1`` ranks with the representation of the last training batch (MMRec's
``self.result``); ``0`` recomputes from the current weights (cliper's decision).
Written for the side-by-side check; shares no code with cliper's model."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"dim": 64, "image_latent": 256, "reg_weight": 1e-4, "stale_scores": 1, "train_ids": 0}


def mean_adj(train: sp.csr_matrix) -> torch.Tensor:
    """Row-normalised adjacency of the symmetric bipartite graph: row i averages i's neighbours."""
    a = sp.bmat([[None, train], [train.T, None]]).tocsr().astype(np.float64)
    a.data[:] = 1.0
    deg = np.asarray(a.sum(1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    a = sp.diags(inv) @ a
    a = a.tocoo()
    return torch.sparse_coo_tensor(np.vstack([a.row, a.col]), a.data.astype(np.float32), a.shape).coalesce()


def xavier_normal_fixed(rows: int, cols: int) -> torch.Tensor:
    t = torch.rand(rows, cols)  # MMRec draws rand first, then overwrites it (same RNG consumption)
    return nn.init.xavier_normal_(t)


class ModalGCN(nn.Module):
    def __init__(self, adj, n_users, d_feat, dim, latent):
        super().__init__()
        self.adj = adj
        d_in = latent if latent else d_feat
        self.preference_raw = None
        pref = xavier_normal_fixed(n_users, d_in)
        self.register_buffer("preference", pref)
        self.proj = nn.Linear(d_feat, latent) if latent else None
        # three layers: conv weight W (no bias), L (linear to dim), G (on the concat [h; x_hat])
        self.conv_w = nn.ParameterList()
        self.lin = nn.ModuleList()
        self.g = nn.ModuleList()
        for layer in range(3):
            d = d_in if layer == 0 else dim
            w = nn.Parameter(torch.empty(d, d))
            bound = 1.0 / np.sqrt(d)  # PyG's uniform(in_channels) first, then xavier-normal over it
            nn.init.uniform_(w, -bound, bound)
            nn.init.xavier_normal_(w)
            self.conv_w.append(w)
            lin = nn.Linear(d, dim)
            nn.init.xavier_normal_(lin.weight)
            self.lin.append(lin)
            g = nn.Linear(d + dim, dim)
            if layer == 0:
                nn.init.xavier_normal_(g.weight)  # later G layers keep Linear's default init
            self.g.append(g)

    def forward(self, feats, ids):
        items = self.proj(feats) if self.proj is not None else feats
        x = F.normalize(torch.cat([self.preference, items], 0))
        for layer in range(3):
            h = F.leaky_relu(torch.sparse.mm(self.adj, x @ self.conv_w[layer]))
            x_hat = F.leaky_relu(self.lin[layer](x)) + ids
            x = F.leaky_relu(self.g[layer](torch.cat([h, x_hat], 1)))
        return x


class Model(nn.Module):
    def __init__(self, inputs, seed, dim=64, image_latent=256, reg_weight=1e-4, stale_scores=1, train_ids=0):
        super().__init__()
        self.n_users, self.reg, self.stale = inputs.n_users, reg_weight, int(stale_scores)
        adj = mean_adj(inputs.train)
        self.feats = {}
        self.gcns = nn.ModuleDict()
        # MMRec's construction order: image GCN, text GCN, then the ID table, then `result`.
        for name, latent in (("image", int(image_latent)), ("text", 0)):
            x = getattr(inputs, name)
            if x is None:
                continue
            self.feats[name] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            self.gcns[name] = ModalGCN(adj, inputs.n_users, x.shape[1], int(dim), latent)
        ids = xavier_normal_fixed(inputs.n_users + inputs.n_items, int(dim))
        if train_ids:
            self.ids = nn.Parameter(ids)
            for g in self.gcns.values():
                g.preference = nn.Parameter(g.preference)
        else:
            self.register_buffer("ids", ids)
        self.result = xavier_normal_fixed(inputs.n_users + inputs.n_items, int(dim))

    def pre_epoch(self):
        pass

    def forward(self):
        rep = sum(g(self.feats[m], self.ids) for m, g in self.gcns.items()) / len(self.gcns)
        self.result = rep.detach()
        return rep

    def loss(self, u, p, n):
        out = self.forward()
        pi, ni = p + self.n_users, n + self.n_users
        pos = (out[u] * out[pi]).sum(1)
        neg = (out[u] * out[ni]).sum(1)
        bpr = -torch.log(torch.sigmoid(pos - neg)).mean()
        # MMRec: mean over the (user, item) pairs of each user repeated for pos and neg
        uu = torch.cat([u, u])
        ii = torch.cat([pi, ni])
        reg = (self.ids[uu] ** 2 + self.ids[ii] ** 2).mean()
        if "image" in self.gcns:
            reg = reg + (self.gcns["image"].preference ** 2).mean()
        return bpr + self.reg * reg

    def scores(self, users):
        rep = self.result if self.stale else self.forward()
        return rep[users] @ rep[self.n_users:].T
