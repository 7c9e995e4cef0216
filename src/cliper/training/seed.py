"""Seeding: one global seed, plus per-epoch generators so a resumed run repeats exactly."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The NumPy generator for shuffling and negative sampling of one epoch."""
    return np.random.default_rng([seed, epoch])


def seed_epoch(seed: int, epoch: int) -> None:
    """Torch RNG state for one epoch (dropout, graph pruning), independent of earlier epochs."""
    torch.manual_seed((seed * 1_000_003 + epoch) % (2**63))
