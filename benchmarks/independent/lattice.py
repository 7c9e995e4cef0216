"""Independent LATTICE (Zhang et al., ACM MM 2021, Sec. 3): per-modality cosine kNN graphs of the raw
features (initial) and of the projected features (learned, rebuilt with gradients on the first batch of
each epoch and reused detached for the rest, as MMRec's models/lattice.py), mixed by softmax modality
weights, A = (1 - lambda) L(sum_m a_m S_m^learned) + lambda sum_m a_m L(S_m^initial) with
L(S) = D^-1/2 S D^-1/2; h = A^n_layers e_item; items = LightGCN(D^-1 (A+I), 2 layers, mean) + h / ||h||.
Loss: BPR (logsigmoid) + reg_weight x sum of squares / 2 of the batch's final user, positive and
negative rows, divided by the configured batch size 2048 (MMRec's bpr_loss). Dense N x N graphs, as
MMRec (the demo catalogue is small). Written from the paper and a reading of MMRec's code for the
side-by-side check; shares no code with cliper's model.

``train_features=1`` (default) trains the raw feature tables, as MMRec (``freeze=False``); they reach
the loss only through the learned graph built on the first batch of an epoch. The lr schedule
(MMRec ``learning_rate_scheduler: [0.96, 50]``, LambdaLR 0.96 ** (epoch / 50)) is ``lr_lambda``
below; the harness loop runs a constant lr unless it honours that attribute.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"dim": 64, "feat_dim": 64, "ui_layers": 2, "n_layers": 1, "knn_k": 10, "lambda_coeff": 0.9,
            "reg_weight": 1e-4, "batch_size": 2048, "train_features": 1}


def rw_self_loop_adj(train: sp.csr_matrix) -> torch.Tensor:
    """D^-1 (A + I) of the bipartite graph (MMRec LATTICE's get_adj_mat)."""
    a = (sp.bmat([[None, train], [train.T, None]]) + sp.eye(sum(train.shape))).tocsr()
    deg = np.asarray(a.sum(1)).ravel()
    inv = np.where(deg > 0, 1.0 / np.maximum(deg, 1e-30), 0.0)
    a = sp.diags(inv) @ a
    a = a.tocoo()
    idx = torch.from_numpy(np.vstack([a.row, a.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(a.data.astype(np.float32)), a.shape).coalesce()


def cosine_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Dense similarity-weighted kNN graph: each row keeps its k largest cosine similarities (self included)."""
    xn = x / x.norm(dim=1, keepdim=True)
    sim = xn @ xn.T
    val, ind = sim.topk(k, dim=1)
    return torch.zeros_like(sim).scatter(1, ind, val)


def sym_laplacian(s: torch.Tensor) -> torch.Tensor:
    d = s.sum(1).pow(-0.5)
    d = torch.where(torch.isinf(d), torch.zeros_like(d), d)
    return d[:, None] * s * d[None, :]


class Model(nn.Module):
    lr_lambda = staticmethod(lambda epoch: 0.96 ** (epoch / 50))

    def __init__(self, inputs, seed, dim=64, feat_dim=64, ui_layers=2, n_layers=1, knn_k=10, lambda_coeff=0.9,
                 reg_weight=1e-4, batch_size=2048, train_features=1):
        super().__init__()
        self.n_users, self.n_items = inputs.n_users, inputs.n_items
        self.ui_layers, self.n_layers, self.k = int(ui_layers), int(n_layers), int(knn_k)
        self.lam, self.reg, self.bs = float(lambda_coeff), float(reg_weight), int(batch_size)
        self.user = nn.Parameter(torch.empty(self.n_users, int(dim)))
        self.item = nn.Parameter(torch.empty(self.n_items, int(dim)))
        nn.init.xavier_uniform_(self.user)
        nn.init.xavier_uniform_(self.item)
        self.feats = nn.ParameterDict()
        self.proj = nn.ModuleDict()
        self.initial = {}
        for name, x in inputs.modalities().items():
            t = torch.from_numpy(np.asarray(x, dtype=np.float32)).clone()
            self.feats[name] = nn.Parameter(t, requires_grad=bool(train_features))
            self.initial[name] = sym_laplacian(cosine_knn(t, self.k))  # from the raw features, fixed
            self.proj[name] = nn.Linear(t.shape[1], int(feat_dim))  # torch's default init, as MMRec
        self.modal_weight = nn.Parameter(torch.tensor([0.5] * len(self.feats)))
        self.adj = rw_self_loop_adj(inputs.train)
        self.item_adj = None
        self.build = True

    def pre_epoch(self):
        self.build = True

    def item_graph(self) -> torch.Tensor:
        w = torch.softmax(self.modal_weight, 0)
        names = list(self.feats)
        learned = sum(w[j] * cosine_knn(self.proj[m](self.feats[m]), self.k) for j, m in enumerate(names))
        original = sum(w[j] * self.initial[m] for j, m in enumerate(names))
        return (1 - self.lam) * sym_laplacian(learned) + self.lam * original

    def encode(self, build: bool):
        if build:
            self.item_adj = self.item_graph()
        else:
            self.item_adj = self.item_adj.detach()
        h = self.item
        for _ in range(self.n_layers):
            h = self.item_adj @ h
        ego = torch.cat([self.user, self.item])
        layers = [ego]
        for _ in range(self.ui_layers):
            ego = torch.sparse.mm(self.adj, ego)
            layers.append(ego)
        out = torch.stack(layers).mean(0)
        return out[: self.n_users], out[self.n_users:] + F.normalize(h, p=2, dim=1)

    def loss(self, u, p, n):
        us, it = self.encode(self.build)
        self.build = False
        eu, ep, en = us[u], it[p], it[n]
        x = (eu * ep).sum(1) - (eu * en).sum(1)
        reg = 0.5 * ((eu ** 2).sum() + (ep ** 2).sum() + (en ** 2).sum()) / self.bs
        return -F.logsigmoid(x).mean() + self.reg * reg

    def scores(self, users):
        us, it = self.encode(True)
        return us[users] @ it.T
