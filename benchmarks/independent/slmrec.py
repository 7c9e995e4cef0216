"""Independent SLMRec (Tao et al., IEEE TMM 2022) with the FAC self-supervised task, written for the
side-by-side check from the paper and MMRec's ``slmrec.py`` / ``SLMRec.yaml`` facts; shares no code
with cliper's model.

- L2-normalised features, a xavier linear map to ``dim`` per modality; ID and modality branches
  propagated by LightGCN on D^-1/2 A D^-1/2 (mean of ``layers`` + 1 outputs), the user side of every
  branch being the one user ID table.
- Branches concatenated, then a xavier linear read-out ((1 + M) d -> d) for users and for items.
- Main loss: in-batch InfoNCE of the L2-normalised user and positive-item rows at ``temp`` (sampled
  negatives unused).
- FAC on the batch's positive items (duplicates kept): ID branch vs image branch through one map each
  at ``d``, unnormalised logits / ``ssl_temp``; then the mapped ID row through a ``d -> d`` map and a
  ``d -> d/2`` map against the text branch through ``d -> d/2``; loss = main + ``ssl_alpha`` * (sum).
- MMRec regularises through Adam ``weight_decay: 1e-4``; the harness optimiser has none, so the loss
  adds ``weight_decay / 2 * sum ||p||^2`` over every trained parameter (the same gradient as Adam's
  coupled weight decay; MMRec's unused audio map gets no gradient and therefore no decay either, so
  it is not built here).
- Scoring: recomputed from the current weights (cliper's documented decision); ``last_batch=1`` ranks
  with the representations of the last training batch instead, as MMRec does.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"dim": 64, "layers": 3, "temp": 0.2, "ssl_alpha": 0.1, "ssl_temp": 0.1, "weight_decay": 1e-4,
            "last_batch": 0}


def sym_norm_adj(train: sp.csr_matrix) -> torch.Tensor:
    n_u, n_i = train.shape
    a = sp.bmat([[None, train], [train.T, None]]).tocoo()
    deg = np.asarray(a.sum(1)).ravel() + 1e-8
    inv = np.power(deg, -0.5)
    vals = a.data * inv[a.row] * inv[a.col]
    idx = np.vstack([a.row, a.col]).astype(np.int64)
    return torch.sparse_coo_tensor(idx, vals.astype(np.float32), a.shape).coalesce()


def xavier_linear(n_in: int, n_out: int) -> nn.Linear:
    lin = nn.Linear(n_in, n_out)  # bias keeps PyTorch's default init, as MMRec
    nn.init.xavier_uniform_(lin.weight)
    return lin


def info_nce(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    logits = a @ b.T / t
    return F.cross_entropy(logits, torch.arange(a.shape[0]))


class Model(nn.Module):
    def __init__(self, inputs, seed, dim=64, layers=3, temp=0.2, ssl_alpha=0.1, ssl_temp=0.1,
                 weight_decay=1e-4, last_batch=0):
        super().__init__()
        d = int(dim)
        self.n_users, self.n_items, self.layers = inputs.n_users, inputs.n_items, int(layers)
        self.temp, self.alpha, self.ssl_temp, self.wd = temp, ssl_alpha, ssl_temp, weight_decay
        self.last_batch = bool(last_batch)
        self.user = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.feats = {}
        self.proj = nn.ModuleDict()
        for m in ("image", "text"):  # order as MMRec: v then t
            x = getattr(inputs, m)
            if x is None:
                continue
            x = torch.as_tensor(x, dtype=torch.float32)
            self.feats[m] = F.normalize(x, dim=1)
            self.proj[m] = xavier_linear(x.shape[1], d)
        if set(self.feats) != {"image", "text"}:
            raise ValueError("this independent SLMRec's FAC needs both image and text features")
        width = d * (1 + len(self.feats))
        self.item_out = xavier_linear(width, d)
        self.user_out = xavier_linear(width, d)
        # FAC maps, named after their roles: id->(id,v), v->(id,v), (id,v)->(id,v,a), (id,v,a)->(id,v,a,t), t->...
        self.g_id_v = xavier_linear(d, d)
        self.g_v = xavier_linear(d, d)
        self.g_idv_a = xavier_linear(d, d)
        self.g_a_t = xavier_linear(d, d // 2)
        self.g_t = xavier_linear(d, d // 2)
        self.adj = sym_norm_adj(inputs.train)
        self._cached = None

    def pre_epoch(self):
        pass

    def _graph(self, item_side: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = torch.cat([self.user, item_side])
        acc = e
        for _ in range(self.layers):
            e = torch.sparse.mm(self.adj, e)
            acc = acc + e
        out = acc / (self.layers + 1)
        return out[: self.n_users], out[self.n_users:]

    def compute(self):
        branches = {"id": self._graph(self.item)}
        for m, x in self.feats.items():
            branches[m] = self._graph(self.proj[m](x))
        u = self.user_out(torch.cat([b[0] for b in branches.values()], 1))
        i = self.item_out(torch.cat([b[1] for b in branches.values()], 1))
        return u, i, branches

    def loss(self, u, p, n):
        users, items, br = self.compute()
        if self.last_batch:
            self._cached = (users.detach(), items.detach())
        main = info_nce(F.normalize(users[u], dim=1), F.normalize(items[p], dim=1), self.temp)
        x_id = self.g_id_v(br["id"][1][p])
        x_v = self.g_v(br["image"][1][p])
        l_v = info_nce(x_id, x_v, self.ssl_temp)
        x_idvt = self.g_a_t(self.g_idv_a(x_id))
        x_t = self.g_t(br["text"][1][p])
        l_t = info_nce(x_idvt, x_t, self.ssl_temp)
        loss = main + self.alpha * (l_v + l_t)
        if self.wd:
            loss = loss + 0.5 * self.wd * sum((q * q).sum() for q in self.parameters() if q.requires_grad)
        return loss

    def scores(self, users):
        if self.last_batch and self._cached is not None:
            us, it = self._cached
        else:
            us, it, _ = self.compute()
        return us[users] @ it.T
