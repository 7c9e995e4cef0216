"""Independent BM3 (Zhou et al., WWW 2023, Sec. 3): LightGCN ID encoder (item = graph output + item ID
embedding), linear feature projections, one shared predictor; the target view is the online one with
latent dropout and no gradient; loss = (1 - cos) terms of graph reconstruction plus cl_weight x
(inter-modality alignment + intra-modality masking), plus reg_weight x MMRec's EmbLoss of ALL online
user and item rows (unsquared Frobenius norms / n_items). No negatives. Written from the paper and a
reading of MMRec's models/bm3.py for the side-by-side check; shares no code with cliper's model.

``train_features=1`` trains the raw feature tables as MMRec's code does (``freeze=False``);
``0`` freezes them (cliper's default). ``row_dropout=1`` draws the target mask per batch row (cliper).

"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"dim": 64, "n_layers": 1, "dropout": 0.3, "reg_weight": 0.1, "cl_weight": 2.0, "train_features": 0,
            "row_dropout": 0}


def sym_norm_adj(train: sp.csr_matrix) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph, degrees + 1e-7 (MMRec's get_norm_adj_mat)."""
    a = sp.bmat([[None, train], [train.T, None]]).tocoo()
    deg = np.asarray((a > 0).sum(1)).ravel().astype(np.float64) + 1e-7
    inv = deg ** -0.5
    vals = (inv[a.row] * a.data * inv[a.col]).astype(np.float32)
    idx = torch.from_numpy(np.vstack([a.row, a.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(vals), a.shape).coalesce()


class Model(nn.Module):
    def __init__(self, inputs, seed, dim=64, n_layers=1, dropout=0.3, reg_weight=0.1, cl_weight=2.0,
                 train_features=0, row_dropout=0):
        super().__init__()
        self.n_users, self.n_items = inputs.n_users, inputs.n_items
        self.n_layers, self.p, self.reg, self.cl = int(n_layers), float(dropout), float(reg_weight), float(cl_weight)
        self.row_dropout = bool(row_dropout)
        dim = int(dim)
        self.user = nn.Parameter(torch.empty(self.n_users, dim))
        self.item = nn.Parameter(torch.empty(self.n_items, dim))
        nn.init.xavier_uniform_(self.user)
        nn.init.xavier_uniform_(self.item)
        self.predictor = nn.Linear(dim, dim)
        nn.init.xavier_normal_(self.predictor.weight)
        self.feats = nn.ParameterDict()
        self.proj = nn.ModuleDict()
        for name, x in inputs.modalities().items():
            self.feats[name] = nn.Parameter(torch.from_numpy(np.asarray(x, dtype=np.float32)).clone(),
                                            requires_grad=bool(train_features))
            lin = nn.Linear(x.shape[1], dim)
            nn.init.xavier_normal_(lin.weight)
            self.proj[name] = lin
        self.adj = sym_norm_adj(inputs.train)

    def pre_epoch(self):
        pass

    def encode(self):
        ego = torch.cat([self.user, self.item])
        layers = [ego]
        for _ in range(self.n_layers):
            ego = torch.sparse.mm(self.adj, ego)
            layers.append(ego)
        out = torch.stack(layers).mean(0)
        return out[: self.n_users], out[self.n_users:] + self.item

    def target(self, x, rows):
        """MMRec: one mask over all rows, then indexed (a row repeated in the batch shares it);
        ``row_dropout``: one mask per batch row (cliper's documented choice)."""
        x = x.detach()
        if self.row_dropout:
            return F.dropout(x[rows], self.p, training=True)
        return F.dropout(x, self.p, training=True)[rows]

    def loss(self, u, p, n):  # n unused: BM3 needs no negatives
        u_on, i_on = self.encode()
        with torch.no_grad():  # target view: dropout over all rows, then indexed (as MMRec)
            u_tg = self.target(u_on, u)
            i_tg = self.target(i_on, p)
        pu, pi = self.predictor(u_on)[u], self.predictor(i_on)[p]
        total = (1 - F.cosine_similarity(pu, i_tg, dim=-1).mean()) + (1 - F.cosine_similarity(pi, u_tg, dim=-1).mean())
        cl = 0.0
        for name, lin in self.proj.items():
            f_on = lin(self.feats[name])
            with torch.no_grad():
                f_tg = self.target(f_on, p)
            pf = self.predictor(f_on)[p]
            cl = cl + (1 - F.cosine_similarity(pf, i_tg, dim=-1).mean()) + (1 - F.cosine_similarity(pf, f_tg, dim=-1).mean())
        reg = (torch.linalg.norm(u_on) + torch.linalg.norm(i_on)) / self.n_items
        return total + self.reg * reg + self.cl * cl

    def scores(self, users):
        u_on, i_on = self.encode()
        return self.predictor(u_on)[users] @ self.predictor(i_on).T
