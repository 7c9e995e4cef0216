"""Recommenders behind one contract (:mod:`cliper.models.base`), found by name in the registry."""

from cliper.models.base import Batch, ModelContext, ModelParams, Recommender
from cliper.models.registry import available_models, get_model_class, register

__all__ = [
    "Batch",
    "ModelContext",
    "ModelParams",
    "Recommender",
    "available_models",
    "get_model_class",
    "register",
]
