"""Independent LGMRec (Guo et al., AAAI 2024), written for the side-by-side check from the paper
and from reading the authors' MMRec model; shares no code with cliper's model.

Local graph embedding: LightGCN on D^-1/2 A D^-1/2 (layer mean) plus, per modality, the projected
features X_m W_m (users: the mean of their items) propagated K rounds (last round only) and
row-normalised. Global hypergraph embedding: per modality H_i = GumbelSoftmax(X_m V_m), H_u =
GumbelSoftmax(R X_m V_m) (R the raw 0/1 train matrix, a sum), inverted dropout (keep_rate, with
the 1/keep_rate scaling of nn.Dropout, training only), then rounds of L = H_i^T E_i, E_i = H_i L,
E_u = H_u L from the collaborative item embedding. Fusion E = E^l + alpha * normalize(sum_m E^g_m).
Loss: BPR + cl_weight * (InfoNCE over all users + over all items, summed over the batch) +
reg_weight * (sum of unsquared Frobenius norms of the batch's final embeddings) / B.

Evaluation: MMRec draws fresh Gumbel noise at every scoring call (``eval_noise=1``, default);
cliper draws it once per pass from a fixed-seed generator (same distribution); ``eval_noise=0``
is the noise-free softmax(logits / tau).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"dim": 64, "n_ui_layers": 2, "n_mm_layers": 2, "n_hyper_layers": 1, "hyper_num": 4,
            "keep_rate": 0.5, "alpha": 0.3, "cl_weight": 1e-4, "reg_weight": 1e-6, "tau": 0.2,
            "eval_noise": 1}


def _sparse(m: sp.spmatrix) -> torch.Tensor:
    m = m.tocoo()
    idx = torch.from_numpy(np.vstack([m.row, m.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(m.data.astype(np.float32)), m.shape).coalesce()


def _xavier(rows: int, cols: int) -> nn.Parameter:
    w = torch.empty(rows, cols)
    nn.init.xavier_uniform_(w)
    return nn.Parameter(w)


class Model(nn.Module):
    def __init__(self, inputs, seed, dim=64, n_ui_layers=2, n_mm_layers=2, n_hyper_layers=1, hyper_num=4,
                 keep_rate=0.5, alpha=0.3, cl_weight=1e-4, reg_weight=1e-6, tau=0.2, eval_noise=1):
        super().__init__()
        self.n_users, self.n_items = inputs.n_users, inputs.n_items
        self.ui_layers, self.mm_layers, self.h_layers = int(n_ui_layers), int(n_mm_layers), int(n_hyper_layers)
        self.keep, self.alpha, self.tau = float(keep_rate), float(alpha), float(tau)
        self.cl_w, self.reg_w, self.eval_noise = float(cl_weight), float(reg_weight), int(eval_noise)
        dim = int(dim)
        # two ID tables, each xavier by its own shape (as the reference)
        self.user_w = _xavier(self.n_users, dim)
        self.item_w = _xavier(self.n_items, dim)
        r = inputs.train.astype(np.float32).tocsr()
        self.r = _sparse(r)  # users x items, raw 0/1
        a = sp.bmat([[None, r], [r.T, None]]).tocsr()
        deg = np.asarray((a > 0).sum(1)).ravel().astype(np.float64) + 1e-7
        inv_sqrt = sp.diags(deg ** -0.5)
        self.adj = _sparse((inv_sqrt @ a @ inv_sqrt).astype(np.float32))
        self.user_inv_deg = torch.from_numpy((1.0 / deg[: self.n_users]).astype(np.float32))[:, None]
        mods = inputs.modalities()
        if len(mods) != 2:
            raise ValueError("the independent LGMRec needs both image and text features")
        self.feats = {m: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for m, x in mods.items()}
        self.proj = nn.ParameterDict({m: _xavier(x.shape[1], dim) for m, x in self.feats.items()})
        self.hyper = nn.ParameterDict({m: _xavier(x.shape[1], int(hyper_num)) for m, x in self.feats.items()})

    def pre_epoch(self):
        pass

    def _gumbel_softmax(self, logits: torch.Tensor, noise: bool) -> torch.Tensor:
        if noise:
            u = torch.empty_like(logits).exponential_()
            logits = logits - u.log()  # + Gumbel(0, 1)
        return torch.softmax(logits / self.tau, dim=1)

    def _drop(self, h: torch.Tensor) -> torch.Tensor:
        return F.dropout(h, p=1.0 - self.keep, training=self.training)

    def forward(self):
        noise = self.training or bool(self.eval_noise)
        deps = {}
        for m, x in self.feats.items():
            li = x @ self.hyper[m]
            lu = torch.sparse.mm(self.r, li)
            deps[m] = (self._gumbel_softmax(li, noise), self._gumbel_softmax(lu, noise))
        # collaborative graph embedding
        e = torch.cat([self.user_w, self.item_w])
        layers = [e]
        for _ in range(self.ui_layers):
            e = torch.sparse.mm(self.adj, e)
            layers.append(e)
        cge = torch.stack(layers).mean(0)
        # modality graph embeddings
        local = cge
        for m, x in self.feats.items():
            fi = x @ self.proj[m]
            fu = torch.sparse.mm(self.r, fi) * self.user_inv_deg
            h = torch.cat([fu, fi])
            for _ in range(self.mm_layers):
                h = torch.sparse.mm(self.adj, h)
            local = local + F.normalize(h, dim=1)
        # global hypergraph embeddings
        item_cf = cge[self.n_users:]
        glob = {}
        for m, (hi, hu) in deps.items():
            hi, hu = self._drop(hi), self._drop(hu)
            ei, eu = item_cf, None
            for _ in range(self.h_layers):
                lat = hi.T @ ei
                ei = hi @ lat
                eu = hu @ lat
            glob[m] = (eu, ei)
        g = sum(torch.cat([eu, ei]) for eu, ei in glob.values())
        out = local + self.alpha * F.normalize(g, dim=1)
        return out[: self.n_users], out[self.n_users:], glob

    def _infonce(self, a: torch.Tensor, b: torch.Tensor, all_b: torch.Tensor) -> torch.Tensor:
        a, b, all_b = F.normalize(a, dim=1), F.normalize(b, dim=1), F.normalize(all_b, dim=1)
        pos = (a * b).sum(1) / self.tau
        return (torch.logsumexp(a @ all_b.T / self.tau, dim=1) - pos).sum()

    def loss(self, u, p, n):
        us, it, glob = self.forward()
        eu, ep, en = us[u], it[p], it[n]
        bpr = -F.logsigmoid((eu * ep).sum(1) - (eu * en).sum(1)).mean()
        (uv, iv), (ut, itx) = glob["image"], glob["text"]
        cl = self._infonce(uv[u], ut[u], ut) + self._infonce(iv[p], itx[p], itx)
        reg = (eu.norm() + ep.norm() + en.norm()) / u.numel()
        return bpr + self.cl_w * cl + self.reg_w * reg

    def scores(self, users):
        us, it, _ = self.forward()
        return us[users] @ it.T
