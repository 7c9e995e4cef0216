"""Independent MGCN (Yu et al., ACM MM 2023), written for the side-by-side check from the
paper's description and a reading of the reference toolbox's model file; shares no code
with cliper.

Pieces, in the reference code's form:
- Behavior-Guided Purifier: the item ID table gated by sigmoid(Linear(Linear(x_m))) per modality;
- User-Item View: LightGCN mean over n_ui_layers on D^-1/2 A D^-1/2 (no self loops);
- Item-Item View: per modality a kNN graph of the raw features (cosine, top knn_k per row, self
  included, weights kept, D^-1/2 S D^-1/2 with D the row sums of the kept weights, not
  symmetrised), n_layers products, then users = the user-item block of the normalised A times
  the item side;
- Behavior-Aware Fuser: shared attention query (Linear, tanh, Linear without bias), softmax over
  modalities, specific parts gated by sigmoid(Linear(E_id)), (common + specifics) / 3;
- loss: BPR on E_id + E_mm, reg_weight * 1/2 squared L2 of the batch's final rows / B, and
  cl_loss * (InfoNCE(items+) + InfoNCE(users)) with cosine, in-batch negatives, tau 0.2.

Switches for the two documented cliper decisions: ``train_features`` (reference: 1, the raw
feature tables are trained; cliper's default: 0, frozen) and ``reg_by_config_batch`` (reference:
1, the regulariser is divided by the configured 2048 also on a smaller last batch; cliper: 0,
the actual batch size). Defaults follow cliper's documented decisions.

The harness's loop keeps Adam's learning rate constant; MGCN's config (reference and cliper)
decays it as MMRec's LambdaLR, lr * 0.96 ** (epoch / 50) with epoch counted from 0. So that
the independent side follows it without a harness change, this module sets the rate itself
from a global optimizer step pre-hook that acts only on an optimizer holding this model's
parameters (``lr_decay=1`` turns it off).
"""

from __future__ import annotations

import weakref

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

DEFAULTS = {"dim": 64, "n_ui_layers": 2, "n_layers": 1, "knn_k": 10, "reg_weight": 1e-4, "cl_loss": 0.01,
            "tau": 0.2, "train_features": 0, "reg_by_config_batch": 0, "batch_size": 2048,
            "lr_decay": 0.96, "lr_decay_step": 50}


def _to_torch(m: sp.spmatrix) -> torch.Tensor:
    m = m.tocoo()
    idx = np.vstack([m.row, m.col]).astype(np.int64)
    return torch.sparse_coo_tensor(torch.from_numpy(idx), torch.from_numpy(m.data.astype(np.float32)),
                                   m.shape).coalesce()


def bipartite_norm(train: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    """(D^-1/2 A D^-1/2 over users+items, its user-item block)."""
    n_u = train.shape[0]
    a = sp.bmat([[None, train], [train.T, None]]).tocsr().astype(np.float64)
    deg = np.asarray(a.sum(1)).ravel()
    with np.errstate(divide="ignore"):
        inv = np.where(deg > 0, deg ** -0.5, 0.0)
    d = sp.diags(inv)
    norm = (d @ a @ d).tocsr()
    return _to_torch(norm), _to_torch(norm[:n_u, n_u:])


def knn_graph(x: np.ndarray, k: int) -> torch.Tensor:
    """Top-k cosine neighbours per row (the row itself included), weights kept, then each
    edge (r, c) scaled by rowsum_r^-1/2 * rowsum_c^-1/2."""
    x = torch.from_numpy(np.asarray(x, dtype=np.float32))
    xn = x / x.norm(dim=1, keepdim=True)
    sim = xn @ xn.T
    val, col = torch.topk(sim, k, dim=1)
    row = torch.arange(x.shape[0]).repeat_interleave(k)
    col, val = col.reshape(-1), val.reshape(-1)
    deg = torch.zeros(x.shape[0]).index_add_(0, row, val)
    inv = deg.pow(-0.5)
    inv[torch.isinf(inv)] = 0.0
    w = inv[row] * val * inv[col]
    return torch.sparse_coo_tensor(torch.stack([row, col]), w, (x.shape[0], x.shape[0])).coalesce()


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.T / tau
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


def _lr_hook(ref):
    def hook(opt, args, kwargs):
        model = ref()
        if model is None or model.epoch < 0:
            return
        mine = model.user_embedding.weight
        for g in opt.param_groups:
            if any(p is mine for p in g["params"]):
                for group in opt.param_groups:
                    base = group.setdefault("independent_base_lr", group["lr"])
                    group["lr"] = base * model.lr_decay ** (model.epoch / model.lr_decay_step)
                return
    return hook


class Model(nn.Module):
    def __init__(self, inputs, seed, dim=64, n_ui_layers=2, n_layers=1, knn_k=10, reg_weight=1e-4, cl_loss=0.01,
                 tau=0.2, train_features=0, reg_by_config_batch=0, batch_size=2048,
                 lr_decay=0.96, lr_decay_step=50):
        super().__init__()
        dim = int(dim)
        self.n_users, self.n_items = inputs.n_users, inputs.n_items
        self.n_ui_layers, self.n_layers = int(n_ui_layers), int(n_layers)
        self.reg_weight, self.cl_weight, self.tau = float(reg_weight), float(cl_loss), float(tau)
        self.reg_denominator = int(batch_size) if reg_by_config_batch else None
        # creation order as the reference: ID tables, then feature tables, then the linear maps
        self.user_embedding = nn.Embedding(self.n_users, dim)
        self.item_id_embedding = nn.Embedding(self.n_items, dim)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        self.adj, self.ui = bipartite_norm(inputs.train)
        mods = inputs.modalities()
        if set(mods) != {"image", "text"}:
            raise ValueError("the independent MGCN follows the reference code: it needs image and text")
        self.feats = nn.ParameterDict({m: nn.Parameter(torch.from_numpy(np.array(x, dtype=np.float32)),
                                                       requires_grad=bool(train_features))
                                       for m, x in mods.items()})
        self.graphs = {m: knn_graph(x, int(knn_k)) for m, x in mods.items()}
        self.trs = nn.ModuleDict({m: nn.Linear(x.shape[1], dim) for m, x in mods.items()})
        self.query = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        self.gate = nn.ModuleDict({m: nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid()) for m in mods})
        self.prefer = nn.ModuleDict({m: nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid()) for m in mods})
        self.epoch = -1  # LambdaLR's epoch index of the epoch being trained
        self.lr_decay, self.lr_decay_step = float(lr_decay), float(lr_decay_step)
        if self.lr_decay != 1.0:
            register_optimizer_step_pre_hook(_lr_hook(weakref.ref(self)))

    def pre_epoch(self):
        self.epoch += 1

    def forward(self):
        item_id = self.item_id_embedding.weight
        # User-Item View
        e = torch.cat([self.user_embedding.weight, item_id])
        layers = [e]
        for _ in range(self.n_ui_layers):
            e = torch.sparse.mm(self.adj, e)
            layers.append(e)
        content = torch.stack(layers, 1).mean(1)
        # purifier + Item-Item View
        views = {}
        for m in ("image", "text"):
            h = item_id * self.gate[m](self.trs[m](self.feats[m]))
            for _ in range(self.n_layers):
                h = torch.sparse.mm(self.graphs[m], h)
            views[m] = torch.cat([torch.sparse.mm(self.ui, h), h])
        # Behavior-Aware Fuser
        att = torch.softmax(torch.cat([self.query(views["image"]), self.query(views["text"])], 1), dim=1)
        common = att[:, :1] * views["image"] + att[:, 1:] * views["text"]
        side = common
        for m in ("image", "text"):
            side = side + self.prefer[m](content) * (views[m] - common)
        side = side / 3
        return content + side, side, content

    def loss(self, u, p, n):
        full, side, content = self.forward()
        users, items = full[: self.n_users], full[self.n_users:]
        eu, ep, en = users[u], items[p], items[n]
        bpr = -F.logsigmoid((eu * ep).sum(1) - (eu * en).sum(1)).mean()
        denom = self.reg_denominator or u.numel()
        reg = 0.5 * (eu.pow(2).sum() + ep.pow(2).sum() + en.pow(2).sum()) / denom
        s_u, s_i = side[: self.n_users], side[self.n_users:]
        c_u, c_i = content[: self.n_users], content[self.n_users:]
        cl = info_nce(s_i[p], c_i[p], self.tau) + info_nce(s_u[u], c_u[u], self.tau)
        return bpr + self.reg_weight * reg + self.cl_weight * cl

    def scores(self, users):
        full, _, _ = self.forward()
        return full[users] @ full[self.n_users:].T
