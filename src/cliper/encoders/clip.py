"""CLIP-family encoders (CLIP, Long-CLIP, any ``CLIPModel`` folder) via ``transformers``.

Long text is handled by tokens, not characters: each text is tokenised once
without special tokens, then either truncated to ``max_text_length - 2`` tokens or
split into windows of that size whose (unit) embeddings are averaged and
re-normalised. Texts are sorted by token length before batching so a batch pads to
its own longest text, not to 77/248.
"""

from __future__ import annotations

import logging
import pickle
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
from cliper.encoders.device import pick_device, pick_dtype
from cliper.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def _features(out: object) -> torch.Tensor:
    """transformers 5 returns a ModelOutput (projected embedding in ``pooler_output``)."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"unexpected CLIP output type {type(out).__name__}")
    return pooled


class ClipEncoder:
    """A CLIP model behind the :class:`cliper.encoders.base.Encoder` interface.

    Build with :meth:`from_pretrained`. ``long_text`` is ``truncate`` or ``window``.
    """

    supports_images = True

    def __init__(self, model, tokenizer, image_processor, name: str, device: torch.device,
                 long_text: str = "truncate", batch_size: int = 64, revision: str = "") -> None:
        if long_text not in LONG_TEXT_MODES:
            raise ConfigError(f"long-text mode {long_text!r} must be one of {', '.join(LONG_TEXT_MODES)}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.id = name
        self.device = device
        self.dtype = next(model.parameters()).dtype
        self.long_text = long_text
        self.batch_size = batch_size
        self.revision = revision
        self.dim = int(model.config.projection_dim)
        self.max_text_length = int(model.config.text_config.max_position_embeddings)
        self.stats = EncoderStats()
        tok = tokenizer
        self._bos = tok.bos_token_id
        self._eos = tok.eos_token_id
        self._pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if self._bos is None or self._eos is None:
            raise ConfigError(f"{name}: tokenizer has no start/end token")

    @classmethod
    def from_pretrained(cls, name_or_dir: str | Path, device: str | torch.device | None = "auto",
                        dtype: str | torch.dtype | None = None, local_files_only: bool | None = None,
                        long_text: str = "truncate", batch_size: int = 64) -> ClipEncoder:
        """Load a ``CLIPModel`` + processor from a hub id or a local folder.

        Offline mode (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``) never touches
        the network. ``device='auto'`` picks CUDA when present, where the model runs in
        float16 unless ``dtype`` says otherwise.
        """
        from transformers import CLIPModel, CLIPProcessor

        name = str(name_or_dir)
        local = Path(name).is_dir()
        offline = offline_requested(local_files_only) or local
        dev = pick_device(device)
        torch_dtype = pick_dtype(dev, dtype)
        if local and not (Path(name) / "config.json").is_file():
            raise DataError("not a model folder: it has no config.json (save it with save_pretrained)", name)
        try:  # transformers loads weights from safetensors, or .bin files with torch's weights_only loader
            model = CLIPModel.from_pretrained(name, local_files_only=offline)
        except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:
            hint = " (offline: the model must be in the local cache or a folder)" if offline else ""
            raise ConfigError(f"cannot load CLIP model {name!r}{hint}: {exc}".splitlines()[0]) from None
        except Exception as exc:  # a truncated or damaged weights file (SafetensorError, RuntimeError, ...)
            raise DataError(f"cannot load the model weights ({type(exc).__name__}: {exc})".splitlines()[0],
                            name) from None
        try:
            processor = CLIPProcessor.from_pretrained(name, local_files_only=offline)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot load the tokenizer/image processor of {name!r}: {exc}".splitlines()[0]) from None
        model = model.to(device=dev, dtype=torch_dtype)
        revision = folder_fingerprint(name) if local else str(getattr(model.config, "_commit_hash", "") or "")
        return cls(model, processor.tokenizer, processor.image_processor, name=name, device=dev,
                   long_text=long_text, batch_size=batch_size, revision=revision)

    # ---------------------------------------------------------------- texts
    def fingerprint(self) -> str:
        """Model id + weights revision + dtype + long-text mode: what shapes the output."""
        return f"clip|{self.id}|{self.revision}|{str(self.dtype)}|{self.long_text}|{self.max_text_length}"

    def tokenize_windows(self, texts: list[str]) -> list[list[list[int]]]:
        """Per text, its token windows (no special tokens), per :attr:`long_text`."""
        ids = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        content = self.max_text_length - 2
        out = []
        for seq in ids:
            wins = token_windows(list(seq), content, self.long_text)
            if len(seq) > content:
                if self.long_text == "truncate":
                    self.stats.truncated_texts += 1
                else:
                    self.stats.windowed_texts += 1
            out.append(wins)
        return out

    def text_coverage(self, texts: list[str]) -> np.ndarray:
        """``[n, 2]``: content tokens per text and how many are encoded (the rest is cut off)."""
        ids = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"] if texts else []
        return coverage_array([len(seq) for seq in ids], self.max_text_length - 2, self.long_text)

    def text_batches(self, texts: list[str], batch_size: int | None = None):
        """Plan the forwards for ``texts``: (owner text per window, [(window indices, ids, mask), ...]).

        Windows are sorted by token length so each batch pads only to its own longest
        window (plus start/end tokens). Exposed so benchmarks can time the bare forwards.
        """
        bs = batch_size or self.batch_size
        windows = self.tokenize_windows(texts)
        owner = [i for i, wins in enumerate(windows) for _ in wins]
        flat = [w for wins in windows for w in wins]
        order = sorted(range(len(flat)), key=lambda j: len(flat[j]))
        batches = []
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            width = max(len(flat[j]) for j in idx) + 2
            ids = torch.full((len(idx), width), self._pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, j in enumerate(idx):
                row = [self._bos, *flat[j], self._eos]
                ids[r, : len(row)] = torch.tensor(row)
                mask[r, : len(row)] = 1
            batches.append((idx, ids, mask))
        return owner, batches

    @torch.inference_mode()
    def forward_text_batch(self, ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """Unit embeddings of one planned batch."""
        t = time.perf_counter()
        out = self.model.get_text_features(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        emb = _features(out).float().cpu().numpy()
        self.stats.forward_s += time.perf_counter() - t
        self.stats.text_forwards += 1
        return l2_normalise(emb)

    def encode_texts(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Unit-length embeddings ``[len(texts), dim]`` (float32 numpy), in input order.

        Long texts follow :attr:`long_text`: truncated to ``max_text_length - 2``
        tokens, or split into windows whose unit embeddings are averaged and
        re-normalised.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        owner, batches = self.text_batches(texts, batch_size)
        emb = np.zeros((len(owner), self.dim), np.float32)
        for idx, ids, mask in batches:
            emb[idx] = self.forward_text_batch(ids, mask)
        summed = np.zeros((len(texts), self.dim), np.float32)
        np.add.at(summed, np.asarray(owner), emb)
        self.stats.texts += len(texts)
        self.stats.text_windows += len(owner)
        return l2_normalise(summed)

    # --------------------------------------------------------------- images
    def preprocess_images(self, images: list) -> torch.Tensor:
        """Pixel tensor for a list of PIL images (RGB conversion done here)."""
        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        return self.image_processor(images=rgb, return_tensors="pt")["pixel_values"]

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Unit-length embeddings of preprocessed pixel values ``[n, 3, H, W]``."""
        t = time.perf_counter()
        out = self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
        emb = _features(out).float().cpu().numpy()
        self.stats.forward_s += time.perf_counter() - t
        self.stats.image_forwards += 1
        self.stats.images += int(pixels.shape[0])
        return l2_normalise(emb)

    def encode_images(self, images: list, batch_size: int | None = None) -> np.ndarray:
        """Unit-length embeddings ``[len(images), dim]`` of PIL images."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        bs = batch_size or self.batch_size
        parts = [self.encode_pixels(self.preprocess_images(images[s : s + bs])) for s in range(0, len(images), bs)]
        return np.concatenate(parts, axis=0)
