"""Encoders: CLIP-family models and sentence encoders behind one small interface.

    >>> from cliper.encoders import load_encoder
    >>> enc = load_encoder("openai/clip-vit-base-patch32")      # or a local folder
    >>> enc.encode_texts(["The product title is Soft Beads."]).shape   # (1, enc.dim), unit rows

``load_encoder`` picks :class:`~cliper.encoders.sentence.SentenceEncoder` for
sentence-transformers folders and the ``all-MiniLM-L6-v2`` alias, and
:class:`~cliper.encoders.clip.ClipEncoder` otherwise.
"""

from __future__ import annotations

from pathlib import Path

from cliper.encoders.base import LONG_TEXT_MODES, Encoder, EncoderStats, l2_normalise


def load_encoder(name_or_dir: str | Path, device: str | None = "auto", long_text: str = "truncate",
                 batch_size: int = 64, dtype: str | None = None, local_files_only: bool | None = None) -> Encoder:
    """A ready encoder for a hub id, a local folder, or ``all-MiniLM-L6-v2``."""
    from cliper.encoders.sentence import SentenceEncoder, is_sentence_model

    if is_sentence_model(name_or_dir):
        return SentenceEncoder.from_pretrained(name_or_dir, device=device, local_files_only=local_files_only,
                                               long_text=long_text, batch_size=batch_size)
    from cliper.encoders.clip import ClipEncoder

    return ClipEncoder.from_pretrained(name_or_dir, device=device, dtype=dtype, local_files_only=local_files_only,
                                       long_text=long_text, batch_size=batch_size)


__all__ = ["LONG_TEXT_MODES", "Encoder", "EncoderStats", "l2_normalise", "load_encoder"]
