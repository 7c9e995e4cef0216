"""Item features as one object every multimodal model receives (after Cornac's modalities).

An :class:`ItemFeatures` holds an image matrix and a text matrix, each [N, d] of any
width, row-aligned to dataset item ids. Text is either a fixed matrix (vanilla or
offline-fused features) or produced on every call from V view matrices by a fusion
layer, so a trainable fusion learns with the recommender. Models call
``features.get("image")`` / ``features.get("text")`` and never read files.
"""

from __future__ import annotations

import copy

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cliper.errors import ConfigError, DataError, reading
from cliper.fusion import ViewFusion, build_fusion

MODALITIES = ("image", "text")


def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().float().contiguous()
    return torch.from_numpy(np.array(x, dtype=np.float32))  # a writable copy (stores are memory-mapped)


def _hash_array(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class ItemFeatures(nn.Module):
    """Image and/or text features for N items.

    Args:
        image (array-like | None): [N, d_img] image features, or None.
        text (array-like | None): [N, d_txt] fixed text features, or None.
        views (array-like | None): [V, N, d] view embeddings (instead of ``text``), fused by ``fusion``.
        similarity (array-like | None): [N, V] view-image cosine similarities for attention fusions.
        fusion: a :class:`ViewFusion`; its parameters train with the model.
        view_names: names of the V views, for reports.
    """

    def __init__(
        self,
        image=None,
        text=None,
        views=None,
        similarity=None,
        fusion: ViewFusion | None = None,
        view_names: list[str] | None = None,
    ):
        super().__init__()
        if text is not None and views is not None:
            raise ConfigError("give either fixed text features or view features with a fusion, not both")
        if views is not None and fusion is None:
            raise ConfigError("view features need a fusion (sum, mean, concat, mlp, sa, attention)")
        # non-persistent buffers: they move with .to(device) but stay out of checkpoints
        self.register_buffer("_image", None if image is None else _as_tensor(image), persistent=False)
        self.register_buffer("_text", None if text is None else _as_tensor(text), persistent=False)
        self.register_buffer("_views", None if views is None else _as_tensor(views), persistent=False)
        sim = None
        if views is not None:
            v, n = self._views.shape[:2]
            sim = torch.zeros(n, v) if similarity is None else _as_tensor(similarity)
            if sim.shape != (n, v):
                raise ConfigError(f"similarity must be [N={n}, V={v}], got {tuple(sim.shape)}")
        self.register_buffer("_similarity", sim, persistent=False)
        self.register_buffer("_fused", None, persistent=False)  # parameter-free fusion, computed once
        self.fusion = fusion
        self._fusion_init: dict[str, torch.Tensor] | None = None  # fusion weights at reset_parameters()
        self.view_names = list(view_names or [])
        sizes = {name: t.shape[0] for name, t in (("image", self._image), ("text", self._text)) if t is not None}
        if self._views is not None:
            sizes["text"] = self._views.shape[1]
        if len(set(sizes.values())) > 1:
            raise ConfigError(f"feature row counts differ: {sizes}")
        if not sizes:
            raise ConfigError("ItemFeatures needs at least one modality")
        self.n_items = next(iter(sizes.values()))

    def fork(self) -> "ItemFeatures":
        """A copy for another model (a grid point, a seed): its own fusion weights, the SAME feature
        arrays. The arrays are never written in place (models train residuals beside them), so a
        sweep holds one [N, 4096] matrix instead of one per point."""
        arrays = (self._image, self._text, self._views, self._similarity, self._fused)
        return copy.deepcopy(self, memo={id(t): t for t in arrays if t is not None})

    # -- what models use -------------------------------------------------------------
    @property
    def modalities(self) -> tuple[str, ...]:
        out = []
        if self._image is not None:
            out.append("image")
        if self._text is not None or self._views is not None:
            out.append("text")
        return tuple(out)

    def has(self, modality: str) -> bool:
        return modality in self.modalities

    def get(self, modality: str, rows: torch.Tensor | None = None) -> torch.Tensor:
        """[N, d] features of ``modality`` (only ``rows`` [B] when given); text is fused from views on
        every call when views are set.

        With ``rows`` a trainable fusion runs on those items alone: every fusion is per item, so
        a batch's features need not fuse all N items (FREEDOM's alignment loss did, twice a batch)."""
        if modality not in MODALITIES:
            raise ConfigError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        if not self.has(modality):
            raise ConfigError(f"no {modality} features configured (have: {', '.join(self.modalities) or 'none'})")
        if modality == "image":
            return self._image if rows is None else self._image.index_select(0, rows)
        if self._text is not None:
            return self._text if rows is None else self._text.index_select(0, rows)
        if self.fusion.trainable:  # every call: gradients reach the fusion
            if rows is None:
                return self.fusion(self._views, self._similarity)
            return self.fusion(self._views.index_select(1, rows), self._similarity.index_select(0, rows))
        if self._fused is None:
            self._fused = self.fusion(self._views, self._similarity)
        return self._fused if rows is None else self._fused.index_select(0, rows)

    def dim(self, modality: str) -> int:
        if modality == "image":
            return int(self.get("image").shape[1])
        if self._text is not None:
            return int(self._text.shape[1])
        return int(self.fusion.out_dim)

    def reset_parameters(self) -> None:
        """Re-initialise a trainable fusion (called after seeding, so runs repeat exactly).

        Keeps a copy of the initial weights: :meth:`fusion_change` then tells a trained
        fusion from one that never moved (the released code reported an untrained MLP)."""
        if self.fusion is not None and hasattr(self.fusion, "reset_parameters"):
            self.fusion.reset_parameters()
        if self.trainable:
            self._fusion_init = {n: p.detach().clone() for n, p in self.fusion.named_parameters()}

    @property
    def fusion_method(self) -> str | None:
        """The ``features.fusion`` name of the fusion layer (None for fixed text)."""
        return None if self.fusion is None else (self.fusion.name or type(self.fusion).__name__)

    def fusion_change(self) -> float | None:
        """Largest absolute change of a trainable fusion's weights since :meth:`reset_parameters`.

        None when the fusion has no weights or was never reset (no recorded start)."""
        if not self.trainable or self._fusion_init is None:
            return None
        diffs = [(p.detach().to(self._fusion_init[n].device) - self._fusion_init[n]).abs().max()
                 for n, p in self.fusion.named_parameters()]
        return float(torch.stack(diffs).max()) if diffs else 0.0

    @property
    def trainable(self) -> bool:
        return self.fusion is not None and self.fusion.trainable

    def attention_weights(self) -> torch.Tensor | None:
        """[N, V] view weights of an attention fusion, else None."""
        if self._views is None or self.fusion is None:
            return None
        with torch.no_grad():
            return self.fusion.weights(self._views, self._similarity)

    def content_hash(self, modality: str) -> str:
        """Hash of the feature content (for graph caches); fusion type and tau included for views."""
        if modality == "image" or self._text is not None:
            return _hash_array(self.get(modality))
        extra = repr(self.fusion).encode()
        return hashlib.sha256((_hash_array(self._views) + _hash_array(self._similarity)).encode() + extra).hexdigest()[:16]

    # -- constructors ----------------------------------------------------------------
    @classmethod
    def from_files(cls, image: str | Path | None = None, text: str | Path | None = None, n_items: int | None = None):
        """MMRec-style ``image_feat.npy`` / ``text_feat.npy`` (rows = item ids)."""
        arrays = {}
        for name, path in (("image", image), ("text", text)):
            if path is None:
                continue
            path = Path(path)
            if not path.is_file():
                raise DataError(f"{name} feature file not found", path)
            try:
                with reading(path):
                    arr = np.load(path, mmap_mode="r")
            except ValueError as exc:
                raise DataError(f"not a .npy array: {exc}", path) from None
            if arr.ndim != 2:
                raise DataError(f"{name} features must be a 2-D [items, dim] array, got shape {arr.shape}", path)
            if n_items is not None and arr.shape[0] != n_items:
                raise DataError(f"{name} features have {arr.shape[0]} rows but the dataset has {n_items} items", path)
            from cliper.features.store import check_finite

            check_finite(arr, path, f"{name} features", ("item row", "column"))
            arrays[name] = np.asarray(arr, dtype=np.float32)
        if not arrays:
            raise ConfigError("no feature files given (image and/or text)")
        return cls(image=arrays.get("image"), text=arrays.get("text"))

    @classmethod
    def from_store(
        cls,
        path: str | Path,
        fusion: str = "sa",
        tau: float = 0.1,
        views: list[str] | None = None,
        use_image: bool = True,
        use_text: bool = True,
        n_items: int | None = None,
    ) -> "ItemFeatures":
        """CLIPER features from a feature store: image + the chosen views fused by ``fusion``."""
        from cliper.features.store import FeatureStore

        store = FeatureStore.open(path)
        if n_items is not None and store.n_items != n_items:
            raise DataError(f"feature store has {store.n_items} items but the dataset has {n_items}", path)
        names = list(store.view_names)
        chosen = names if views is None else list(views)
        unknown = [v for v in chosen if v not in names]
        if unknown:
            raise ConfigError(f"views {unknown} not in the feature store {path} (has {names})")
        if not chosen:
            raise ConfigError("at least one view must be selected")
        idx = [names.index(v) for v in chosen]
        view_arr = np.asarray(store.views)[idx] if use_text else None
        sim = np.asarray(store.similarity)[:, idx] if use_text else None
        return cls(
            image=np.asarray(store.image) if use_image else None,
            views=view_arr,
            similarity=sim,
            fusion=build_fusion(fusion, len(idx), int(store.dim), tau) if use_text else None,
            view_names=chosen,
        )

    @classmethod
    def random(cls, n_items: int, image_dim: int | None = 4096, text_dim: int | None = 384, seed: int = 0):
        """Seeded random features of given widths (for speed/memory runs; say so in reports)."""
        rng = np.random.default_rng(seed)
        image = None if not image_dim else rng.standard_normal((n_items, image_dim), dtype=np.float32)
        text = None if not text_dim else rng.standard_normal((n_items, text_dim), dtype=np.float32)
        return cls(image=image, text=text)

    def extra_repr(self) -> str:
        dims = ", ".join(f"{m}={self.dim(m)}" for m in self.modalities)
        return f"n_items={self.n_items}, {dims}"
