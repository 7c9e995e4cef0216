"""Independent BPR-MF (Rendle et al., UAI 2009, Sec. 4) as MMRec's bpr.py behaves: two xavier_normal
tables, score = dot product, loss -log(1e-10 + sigmoid(x_uij)) averaged, plus reg_weight times the
unsquared Frobenius norms of the batch's user / positive / negative embeddings divided by B (its
EmbLoss). Written for the side-by-side check; shares no code with cliper's model."""

from __future__ import annotations

import torch
from torch import nn

DEFAULTS = {"dim": 64, "reg_weight": 1e-4}


class Model(nn.Module):
    def __init__(self, inputs, seed, dim=64, reg_weight=1e-4):
        super().__init__()
        self.users = nn.Embedding(inputs.n_users, int(dim))
        self.items = nn.Embedding(inputs.n_items, int(dim))
        nn.init.xavier_normal_(self.users.weight)
        nn.init.xavier_normal_(self.items.weight)
        self.reg = float(reg_weight)

    def pre_epoch(self):
        pass

    def loss(self, u, p, n):
        eu, ep, en = self.users(u), self.items(p), self.items(n)
        x = (eu * ep).sum(1) - (eu * en).sum(1)
        bpr = -torch.log(1e-10 + torch.sigmoid(x)).mean()
        reg = (eu.norm() + ep.norm() + en.norm()) / u.numel()
        return bpr + self.reg * reg

    def scores(self, users):
        return self.users(users) @ self.items.weight.T
