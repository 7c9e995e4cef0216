"""Tiny CLIP models built from a config: the test and demo stand-in for real weights.

They are saved with ``save_pretrained`` beside a byte-level tokenizer and an image
processor, so they load through exactly the code path a real hub folder takes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from cliper.encoders.tokenizer import BYTE_VOCAB_SIZE, save_byte_level_tokenizer


def tiny_clip_config(
    projection_dim: int = 32,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    image_size: int = 32,
    patch_size: int = 8,
    max_text_length: int = 77,
) -> CLIPConfig:
    """A small CLIP config; ``max_text_length`` 248 gives a Long-CLIP-shaped text tower."""
    text = dict(
        vocab_size=BYTE_VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=max_text_length,
        bos_token_id=BYTE_VOCAB_SIZE - 2,
        eos_token_id=BYTE_VOCAB_SIZE - 1,
        pad_token_id=BYTE_VOCAB_SIZE - 1,
    )
    vision = dict(
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)


def save_tiny_clip(folder: str | Path, seed: int = 0, **config_kwargs) -> Path:
    """Build a randomly initialised tiny CLIP and save model, tokenizer and processor to ``folder``."""
    folder = Path(folder)
    config = tiny_clip_config(**config_kwargs)
    torch.manual_seed(seed)
    model = CLIPModel(config)
    model.save_pretrained(folder)
    save_pretrained_processor_files(folder, config)
    return folder


def save_pretrained_processor_files(folder: str | Path, config: CLIPConfig) -> None:
    """Tokenizer and image processor matching ``config``, so ``CLIPProcessor`` loads from ``folder``."""
    size = config.vision_config.image_size
    save_byte_level_tokenizer(folder, max_length=config.text_config.max_position_embeddings)
    CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    ).save_pretrained(folder)
