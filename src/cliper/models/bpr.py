"""BPR-MF: Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009.

Matrix factorisation scored by the dot product, trained with the BPR criterion
(Section 4.1) and L2 regularisation of the embeddings in the batch.

Differences from MMRec's BPR (table on docs/backbones/bpr.md): none in behaviour at the defaults
(L2 ``reg_form: norm`` = its EmbLoss, xavier_normal init, its grid); ``logsigmoid`` replaces
``log(1e-10 + sigmoid)`` for stability.
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeFloat, PositiveInt
from torch import nn

from cliper.models.base import Batch, ModelContext, ModelParams, Recommender, RegForm
from cliper.models.layers import pair_rows_loss
from cliper.models.registry import register


class BPRParams(ModelParams):
    reg_form: RegForm = "norm"  # the reference code's L2 form (layers.l2_penalty)
    embedding_dim: PositiveInt = 64  # latent factors
    reg_weight: NonNegativeFloat = 1e-4  # L2 on the batch's user/item embeddings


@register
class BPR(Recommender):
    name = "bpr"
    Params = BPRParams

    def __init__(self, ctx: ModelContext, params: BPRParams):
        super().__init__(ctx, params)
        self.user_embedding = nn.Embedding(self.n_users, params.embedding_dim)
        self.item_embedding = nn.Embedding(self.n_items, params.embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # MMRec's BPR: self.apply(xavier_normal_initialization)
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        # one node for the lookups, the scores, BPR and the penalty (layers.pair_rows_loss)
        return pair_rows_loss(self.user_embedding.weight, self.item_embedding.weight, batch.users,
                              torch.cat([batch.pos_items, batch.neg_items]), self.params.reg_form,
                              self.params.reg_weight)

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_embedding.weight, self.item_embedding.weight
