"""TextMF: BPR matrix factorisation whose item vector adds a projection of the item's text features.

score(u, i) = p_u . (q_i + W t_i), where t_i is the fused CLIPER text feature of item i.
"""

import torch
from torch import nn

from cliper.models import Batch, ModelContext, ModelParams, Recommender
from cliper.models.layers import bpr_loss, l2_reg


class TextMFParams(ModelParams):
    embedding_dim: int = 64
    reg_weight: float = 1e-4


class TextMF(Recommender):
    name = "textmf"
    Params = TextMFParams
    modalities = ("text",)
    config_file = "textmf.yaml"

    def __init__(self, ctx: ModelContext, params: TextMFParams):
        super().__init__(ctx, params)
        d = params.embedding_dim
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d)
        self.text_proj = nn.Linear(self.features.dim("text"), d, bias=False)
        for w in (self.user_embedding.weight, self.item_embedding.weight, self.text_proj.weight):
            nn.init.xavier_uniform_(w)

    def item_vectors(self) -> torch.Tensor:
        return self.item_embedding.weight + self.text_proj(self.features.get("text"))

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        items = self.item_vectors()
        u = self.user_embedding(batch.users)
        p, n = items[batch.pos_items], items[batch.neg_items]
        return bpr_loss((u * p).sum(1), (u * n).sum(1)) + self.params.reg_weight * l2_reg(u, p, n)

    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor:
        items = self.cached(self.item_vectors)
        return self.user_embedding(users) @ items.T
