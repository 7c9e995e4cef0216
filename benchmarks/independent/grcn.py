"""Independent GRCN (Wei et al., ACM MM 2020) following MMRec's ``grcn.py``.

Per modality: f = norm(lrelu(W x)), prototypes p = norm(preference). ``routing=0`` (MMRec): the
routing loop is a no-op, because its messages run user -> item only and users receive zeros;
``routing=1`` (the paper, cliper's default): p <- norm(p + sum_{i in N(u)} softmax_i(p.f_i) f_i), 3 times.
Content rep = x + sum over in-edges of alpha * x_src, with alpha the softmax of x_dst.x_src over the
target's in-edges (both directions). Edge weight = relu(max_m alpha_m * conf[src]). ID rep =
e + A_w e + A_w A_w e with e = norm(id table), sum aggregation. Representation [id; image; text];
BPR as -mean(log(sigmoid)); L2 = mean ID rows + mean image preference table + mean batch-user
preference rows per modality. ``stale_scores=1`` ranks with the last training batch's
representation (MMRec's ``self.result``); ``0`` recomputes (cliper). Shares no code with cliper."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"dim": 64, "latent": 64, "n_routing": 3, "routing": 0, "reg_weight": 1e-4, "stale_scores": 1}


def xavier_normal_fixed(rows: int, cols: int) -> torch.Tensor:
    return nn.init.xavier_normal_(torch.rand(rows, cols))  # MMRec: rand, then overwritten


def segment_softmax(logits: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Softmax of edge logits within each target group (PyG's softmax: max shift, +1e-16)."""
    mx = torch.full((n_groups,), -float("inf"), dtype=logits.dtype)
    mx = mx.scatter_reduce(0, group, logits.detach(), reduce="amax", include_self=True)
    e = torch.exp(logits - mx[group])
    s = torch.zeros(n_groups, dtype=logits.dtype).index_add(0, group, e)
    return e / (s[group] + 1e-16)


def attend(x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, n: int):
    """GAT-like step without parameters: per-edge softmax of x_dst.x_src over dst's in-edges,
    aggregated by sum at dst. Returns (aggregate [n, d], alpha [E])."""
    alpha = segment_softmax((x[dst] * x[src]).sum(1), dst, n)
    out = torch.zeros(n, x.shape[1], dtype=x.dtype).index_add(0, dst, x[src] * alpha[:, None])
    return out, alpha


class Content(nn.Module):
    def __init__(self, feats: np.ndarray, n_users: int, latent: int):
        super().__init__()
        self.n_users = n_users
        self.preference = nn.Parameter(xavier_normal_fixed(n_users, latent))
        self.feats = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
        self.mlp = nn.Linear(self.feats.shape[1], latent)
        nn.init.xavier_normal_(self.mlp.weight)

    def forward(self, u, i, n_routing, routing):
        n = self.n_users + self.feats.shape[0]
        f = F.normalize(F.leaky_relu(self.mlp(self.feats)))
        p = F.normalize(self.preference)
        for _ in range(n_routing):
            if routing:  # the paper: users gather their items (item -> user edges)
                agg, _ = attend(torch.cat([p, f]), i, u, n)
            else:  # MMRec: user -> item edges only, so the users' rows of the aggregate are zero
                agg, _ = attend(torch.cat([p, f]), u, i, n)
            p = F.normalize(p + agg[: self.n_users])
        x = torch.cat([p, f])
        src, dst = torch.cat([u, i]), torch.cat([i, u])  # [u->i ; i->u], MMRec's order
        agg, alpha = attend(x, src, dst, n)
        return x + agg, alpha


class Model(nn.Module):
    def __init__(self, inputs, seed, dim=64, latent=64, n_routing=3, routing=0, reg_weight=1e-4, stale_scores=1):
        super().__init__()
        self.n_users, self.n = inputs.n_users, inputs.n_users + inputs.n_items
        self.reg, self.stale = reg_weight, int(stale_scores)
        self.n_routing, self.routing = int(n_routing), int(routing)
        coo = inputs.train.tocoo()
        self.u = torch.from_numpy(coo.row.astype(np.int64))
        self.i = torch.from_numpy(coo.col.astype(np.int64) + inputs.n_users)
        # MMRec's construction order: ID table, image, text, confidence, result
        self.ids = nn.Parameter(xavier_normal_fixed(self.n, int(dim)))
        self.content = nn.ModuleDict()
        for name, x in inputs.modalities().items():
            self.content[name] = Content(x, inputs.n_users, int(latent))
        self.conf = nn.Parameter(xavier_normal_fixed(self.n, len(self.content)))
        self.result = xavier_normal_fixed(self.n, int(dim))

    def pre_epoch(self):
        pass

    def forward(self):
        reps, alphas = [], []
        for c in self.content.values():
            r, a = c(self.u, self.i, self.n_routing, self.routing)
            reps.append(r)
            alphas.append(a)
        src, dst = torch.cat([self.u, self.i]), torch.cat([self.i, self.u])
        w = torch.stack(alphas, 1) * self.conf[src]  # [2E, M]: confidence of each edge's source
        w = torch.relu(w.max(1).values)
        e = F.normalize(self.ids)
        h1 = torch.zeros_like(e).index_add(0, dst, e[src] * w[:, None])
        h2 = torch.zeros_like(e).index_add(0, dst, h1[src] * w[:, None])
        rep = torch.cat([e + h1 + h2, *reps], 1)
        self.result = rep.detach()
        return rep

    def loss(self, u, p, n):
        out = self.forward()
        pi, ni = p + self.n_users, n + self.n_users
        pos = (out[u] * out[pi]).sum(1)
        neg = (out[u] * out[ni]).sum(1)
        bpr = -torch.log(torch.sigmoid(pos - neg)).mean()
        uu, ii = torch.cat([u, u]), torch.cat([pi, ni])
        reg = (self.ids[uu] ** 2 + self.ids[ii] ** 2).mean()
        if "image" in self.content:
            reg = reg + (self.content["image"].preference ** 2).mean()
        for c in self.content.values():
            reg = reg + (c.preference[uu] ** 2).mean()
        return bpr + self.reg * reg

    def scores(self, users):
        rep = self.result if self.stale else self.forward()
        return rep[users] @ rep[self.n_users:].T
