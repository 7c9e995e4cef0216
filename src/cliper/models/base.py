"""The one model contract every recommender implements (after RecBole / MMRec).

The trainer calls only: ``calculate_loss(batch)``, ``full_sort_predict(users)`` and
``pre_epoch_hook(epoch)``; serving calls ``export_embeddings()``. Models get a :class:`ModelContext` (train graph only,
item features, a cache folder) and typed parameters; they never read files.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveInt
from torch import nn

from cliper.data.interactions import TrainView
from cliper.errors import ConfigError
from cliper.graphs.knn_search import KnnSearch


RegForm = Literal["squared", "norm", "mean"]  # forms of cliper.models.layers.l2_penalty


class ModelParams(BaseModel):
    """Hyperparameters of a model; an unknown key is an error."""

    model_config = ConfigDict(extra="forbid")

    embedding_dim: PositiveInt = 64
    reg_weight: NonNegativeFloat = 1e-4
    # form of the L2 penalty reg_weight multiplies (cliper.models.layers.l2_penalty); each model's
    # Params and YAML default to the form its reference code and grid use
    reg_form: RegForm = "squared"


@dataclass(frozen=True)
class Batch:
    """A training batch of (user, positive item, negative item) triples."""

    users: torch.Tensor
    pos_items: torch.Tensor
    neg_items: torch.Tensor

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.users.to(device), self.pos_items.to(device), self.neg_items.to(device))


@dataclass(frozen=True)
class ModelContext:
    """Everything a model may read: the train graph, item features, a cache folder, the kNN search."""

    train: TrainView
    features: "ItemFeatures | None" = None  # noqa: F821  (cliper.features.item_features)
    cache_dir: Path | None = None
    device: torch.device = torch.device("cpu")
    knn: KnnSearch = KnnSearch()  # how kNN item graphs are searched (config section ``graph``)

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items


class Recommender(nn.Module, ABC):
    """Base recommender.

    Subclasses set ``name``, ``Params`` and ``modalities`` (the feature modalities
    they need: ``()`` for ID-only models, e.g. ``("image", "text")`` for multimodal
    ones; ``min_modalities`` how many of them must be present). ``config_file`` names
    a YAML file beside the model's module (package data) holding its defaults and
    grid, like ``cliper/configs/models/<name>.yaml`` does for the built-ins; plugins
    use it so their defaults layer exactly as cliper's own.
    """

    name: ClassVar[str] = ""
    config_file: ClassVar[str | None] = None
    Params: ClassVar[type[ModelParams]] = ModelParams
    modalities: ClassVar[tuple[str, ...]] = ()
    min_modalities: ClassVar[int] = 0

    def __init__(self, ctx: ModelContext, params: ModelParams):
        super().__init__()
        self.ctx = ctx
        self.params = params
        self.n_users = ctx.n_users
        self.n_items = ctx.n_items
        self._eval_cache: object | None = None
        if not self.modalities and getattr(ctx.features, "trainable", False):
            from cliper.models.fused_graphs import refuse_unreached_fusion

            refuse_unreached_fusion(self.name, ctx.features, "the model reads no item features, so the fusion "
                                    "would never train; use a fixed fusion or no features")
        if self.modalities:
            have = [] if ctx.features is None else [m for m in self.modalities if m in ctx.features.modalities]
            need = self.min_modalities or len(self.modalities)
            if len(have) < need:
                raise ConfigError(
                    f"model {self.name!r} needs item features for {need} of {list(self.modalities)}, "
                    f"got {have or 'none'}; set features.image / features.text or features.store"
                )
            # a submodule, so a trainable fusion is optimised and moved with the model
            self.features = ctx.features

    @abstractmethod
    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        """Scalar training loss for one batch (BPR-style + regularisation)."""

    def full_sort_predict(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user: float tensor [len(users), n_items].

        Every backbone scores by the dot product of :meth:`score_embeddings` (serving ranks with
        that pair alone), so it is written once here; a model whose scores are not such a product
        overrides this.
        """
        all_users, all_items = self.score_embeddings()
        return all_users[users] @ all_items.T

    def score_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (users [U, d], items [I, d]) pair full ranking multiplies: ``full_sort_predict(u) ==
        users[u] @ items.T``. Called in eval mode without gradients; a model computes it as its
        evaluation pass does (``self.cached(...)``)."""
        raise NotImplementedError(f"model {self.name!r} implements neither score_embeddings() (scoring and "
                                  "serving) nor full_sort_predict() (scoring only)")

    @torch.no_grad()
    def export_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (users [U, d], items [I, d]) as detached float32 CPU copies, in eval mode.

        Every backbone scores by this dot product; serving ranks with these two matrices
        alone, so a bundle needs no model code. Models provide :meth:`score_embeddings`.
        """
        self.eval()
        users, items = self.score_embeddings()
        return users.detach().float().cpu().clone(), items.detach().float().cpu().clone()

    def pre_epoch_hook(self, epoch: int) -> None:
        """Called before each training epoch (e.g. re-sample a pruned graph)."""

    def train(self, mode: bool = True) -> "Recommender":
        # Leaving or entering a mode invalidates embeddings cached for full ranking.
        self._eval_cache = None
        return super().train(mode)

    def _state_key(self) -> tuple:
        """Identity and in-place version of every parameter and buffer: changes when any is updated."""
        return tuple((id(t), t._version) for t in (*self.parameters(), *self.buffers()))

    def cached(self, compute):
        """Compute-once-per-evaluation helper: ``self.cached(lambda: self.propagate())``.

        ``train()`` / ``eval()`` clear it; the evaluator leaves a model already in eval mode as
        it is, so the test pass right after the valid pass reuses it. It is also recomputed
        whenever a parameter or buffer changed in place (optimiser steps and
        ``load_state_dict`` bump tensor versions), so it never outlives the weights.
        """
        if self.training:
            return compute()
        key = self._state_key()
        if self._eval_cache is None or self._eval_cache[0] != key:
            self._eval_cache = (key, compute())
        return self._eval_cache[1]

    def extra_repr(self) -> str:
        return f"n_users={self.n_users}, n_items={self.n_items}"
