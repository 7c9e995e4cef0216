"""Independent VBPR (He & McAuley, AAAI 2016, Eq. 2 without the bias terms, as MMRec's
"recommended version"): score = [gamma_u; theta_u] . [gamma_i; E f_i + b], f_i = [text; image].
MMRec's facts followed: both ID tables xavier_uniform by their own shapes (user table 2d wide),
E xavier_normal with a zero bias, every item projected on every call, BPR loss
-mean ln(1e-10 + sigmoid), plus reg_weight x EmbLoss (unsquared Frobenius norms of the batch's
user, positive and negative rows, / B). Written for the side-by-side check; shares no code with
cliper's model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

DEFAULTS = {"dim": 64, "reg_weight": 1e-4}


class Model(nn.Module):
    def __init__(self, inputs, seed, dim=64, reg_weight=1e-4):
        super().__init__()
        dim = int(dim)
        self.reg = float(reg_weight)
        self.user = nn.Parameter(nn.init.xavier_uniform_(torch.empty(inputs.n_users, 2 * dim)))
        self.item = nn.Parameter(nn.init.xavier_uniform_(torch.empty(inputs.n_items, dim)))
        parts = [x for x in (inputs.text, inputs.image) if x is not None]  # MMRec: text first
        self.register_buffer("raw", torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32)))
        self.proj = nn.Linear(self.raw.shape[1], dim)
        nn.init.xavier_normal_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def pre_epoch(self):
        pass

    def items(self):
        return torch.cat([self.item, self.proj(self.raw)], dim=1)

    def loss(self, u, p, n):
        it = self.items()
        ue, pe, ne = self.user[u], it[p], it[n]
        d = (ue * pe).sum(1) - (ue * ne).sum(1)
        bpr = -torch.log(1e-10 + torch.sigmoid(d)).mean()
        reg = (torch.linalg.norm(ue) + torch.linalg.norm(pe) + torch.linalg.norm(ne)) / u.numel()
        return bpr + self.reg * reg

    def scores(self, users):
        return self.user[users] @ self.items().T
