"""The one small interface every encoder implements, plus shared helpers."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

LONG_TEXT_MODES = ("truncate", "window")


@dataclass
class EncoderStats:
    """Work counters (what tests and the cache check instead of timing)."""

    texts: int = 0
    images: int = 0
    text_windows: int = 0
    truncated_texts: int = 0
    windowed_texts: int = 0
    text_forwards: int = 0
    image_forwards: int = 0
    forward_s: float = 0.0  # wall time inside model forwards (pure model time, for overhead figures)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@runtime_checkable
class Encoder(Protocol):
    """Encode texts and images into one L2-normalised space.

    ``encode_texts``/``encode_images`` return float32 arrays ``[n, dim]`` with unit
    rows. ``max_text_length`` counts tokens including start/end tokens.
    ``fingerprint`` changes whenever the weights or settings that shape the output
    change (it keys the feature cache).
    """

    id: str
    dim: int
    max_text_length: int
    supports_images: bool
    stats: EncoderStats

    def encode_texts(self, texts: list[str], batch_size: int | None = None) -> np.ndarray: ...

    def encode_images(self, images: list, batch_size: int | None = None) -> np.ndarray: ...

    def fingerprint(self) -> str: ...

    # Optional: ``text_coverage(texts) -> int array [n, 2]`` (content tokens, tokens encoded),
    # which ``cliper extract`` reports per view; encoders without it report "unknown".


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, eps)


def folder_fingerprint(path: str | Path) -> str:
    """Hash of a local model folder: config bytes plus each weight file's name, size, mtime."""
    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if not f.is_file():
            continue
        if f.suffix in (".json", ".txt", ".model"):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        else:
            st = f.stat()
            h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def offline_requested(local_files_only: bool | None) -> bool:
    """Explicit flag, else HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set to a true value."""
    if local_files_only is not None:
        return local_files_only
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


MAX_TEXT_WINDOWS = 16  # windows kept per text in ``window`` mode (16 x 75 CLIP tokens ~ 1,200 tokens)


def token_windows(ids: list[int], content_len: int, mode: str, max_windows: int = MAX_TEXT_WINDOWS) -> list[list[int]]:
    """Split one text's token ids (no special tokens) into windows of ``content_len``.

    ``truncate`` keeps the first window only; ``window`` keeps at most ``max_windows``
    (an empty text is one empty window; the tail of a longer text is dropped, so a
    hostile multi-megabyte description costs a bounded number of forwards). The caller
    averages the windows' embeddings.
    """
    if content_len < 1:
        raise ValueError("content_len must be positive")
    if mode == "truncate" or len(ids) <= content_len:
        return [ids[:content_len]]
    end = min(len(ids), content_len * max(1, max_windows))
    return [ids[i : i + content_len] for i in range(0, end, content_len)]


def kept_tokens(n_tokens: np.ndarray, content_len: int, mode: str, max_windows: int = MAX_TEXT_WINDOWS) -> np.ndarray:
    """Tokens of each text that reach the model, per :func:`token_windows` (truncate: one window)."""
    cap = content_len if mode == "truncate" else content_len * max(1, max_windows)
    return np.minimum(np.asarray(n_tokens, dtype=np.int64), cap)


def coverage_array(lengths: list[int], content_len: int, mode: str) -> np.ndarray:
    """``[n, 2]`` int64: content tokens of each text and how many of them are encoded."""
    n = np.asarray(lengths, dtype=np.int64).reshape(-1)
    return np.stack([n, kept_tokens(n, content_len, mode)], axis=1) if n.size else np.zeros((0, 2), np.int64)
