"""The training loop (kept apart from models and data) and run orchestration."""

from cliper.training.trainer import FitResult, Trainer

__all__ = ["FitResult", "Trainer"]
