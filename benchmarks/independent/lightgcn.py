"""Independent LightGCN (He et al., SIGIR 2020, Sec. 3.1): mean of the layer outputs of
E^(l+1) = D^-1/2 A D^-1/2 E^(l) over the user-item graph, BPR loss plus MMRec's EmbLoss
(unsquared Frobenius norm of the batch's ego embeddings / B) times reg_weight. Written for the
side-by-side check; shares no code with cliper's model."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"dim": 64, "layers": 2, "reg_weight": 1e-4, "separate_init": 1}


def norm_adj(train: sp.csr_matrix) -> torch.Tensor:
    n_u, n_i = train.shape
    a = sp.bmat([[None, train], [train.T, None]]).tocoo()
    d = np.asarray(a.sum(1)).ravel() + 1e-7
    vals = a.data / np.sqrt(d[a.row] * d[a.col])
    return torch.sparse_coo_tensor(np.vstack([a.row, a.col]), vals.astype(np.float32), a.shape).coalesce()


class Model(nn.Module):
    def __init__(self, inputs, seed, dim=64, layers=2, reg_weight=1e-4, separate_init=1):
        super().__init__()
        self.n_users, self.layers, self.reg = inputs.n_users, int(layers), reg_weight
        self.emb = nn.Embedding(inputs.n_users + inputs.n_items, int(dim))
        if separate_init:  # MMRec: two nn.Embedding tables, each xavier_uniform by its own shape
            with torch.no_grad():
                u = torch.empty(inputs.n_users, int(dim))
                i = torch.empty(inputs.n_items, int(dim))
                nn.init.xavier_uniform_(u)
                nn.init.xavier_uniform_(i)
                self.emb.weight.copy_(torch.cat([u, i]))
        else:
            nn.init.xavier_uniform_(self.emb.weight)
        self.adj = norm_adj(inputs.train)

    def pre_epoch(self):
        pass

    def propagate(self):
        e = self.emb.weight
        out = [e]
        for _ in range(self.layers):
            e = torch.sparse.mm(self.adj, e)
            out.append(e)
        out = torch.stack(out).mean(0)
        return out[: self.n_users], out[self.n_users:]

    def loss(self, u, p, n):
        us, it = self.propagate()
        x = (us[u] * it[p]).sum(1) - (us[u] * it[n]).sum(1)
        ego = self.emb.weight
        reg = sum(torch.norm(t) for t in (ego[u], ego[self.n_users + p], ego[self.n_users + n])) / u.numel()
        return -F.logsigmoid(x).mean() + self.reg * reg

    def scores(self, users):
        us, it = self.propagate()
        return us[users] @ it.T
