"""Contrastive CLIP training on a catalogue's (image, view text) pairs."""

from cliper.finetune.config import FinetuneConfig
from cliper.finetune.trainer import FinetuneResult, finetune_clip

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune_clip"]
