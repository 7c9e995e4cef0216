"""The item feature store: one folder per extraction, read by every recommender.

Layout (all arrays row-aligned with ``item_ids``, which is ``0..N-1``)::

    image.npy        float32 [N, d]    unit rows; rows without a real image filled by
                                       the manifest's ``missing_image_rule``
    image_mask.npy   bool    [N]       True = a real image was encoded
    views.npy        float32 [V, N, d] unit rows, one slab per view (``view_names``)
    similarity.npy   float32 [N, V]    cosine(view, image), NOT divided by tau;
                                       0.0 where ``image_mask`` is False
    item_ids.npy     int64   [N]
    manifest.json    encoder, views, hashes, counts, missing items, timings, and
                     ``text_coverage`` (per view: share of items whose text exceeded the
                     encoder's window, mean fraction of tokens encoded)

``manifest.json`` is written last: a folder without it is an unfinished extraction
(re-running the same command resumes it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cliper.atomic import atomic_write
from cliper.errors import DataError

ARRAY_FILES = ("image", "image_mask", "views", "similarity", "item_ids")
MANIFEST = "manifest.json"


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` via a temp file + rename (never a half-written file)."""
    atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def find_non_finite(arr: np.ndarray, block: int = 1 << 16) -> tuple[tuple[int, ...], float] | None:
    """(index, value) of the first NaN or infinity in ``arr``, or None; scans in row blocks so a
    memory-mapped array is never loaded whole."""
    if arr.dtype.kind not in "fc" or arr.size == 0:
        return None
    flat = arr.reshape(-1, arr.shape[-1]) if arr.ndim > 1 else arr.reshape(-1, 1)
    for start in range(0, flat.shape[0], block):
        part = np.asarray(flat[start : start + block])
        bad = ~np.isfinite(part)
        if bad.any():
            r, c = (int(x) for x in np.argwhere(bad)[0])
            index = np.unravel_index((start + r) * flat.shape[1] + c, arr.shape)
            return tuple(int(i) for i in index), float(part[r, c])
    return None


def check_finite(arr: np.ndarray, path: Path, what: str, axes: tuple[str, ...] = ("row", "column")) -> None:
    """DataError naming the file, row and column of the first NaN/inf (trained on, it would poison the model)."""
    found = find_non_finite(arr)
    if found is not None:
        index, value = found
        where = ", ".join(f"{a} {i}" for a, i in zip(axes, index))
        raise DataError(f"{what} holds {value} at {where}; features must be finite numbers", path)


class FeatureStore:
    """Read access to an extraction folder (arrays memory-mapped by default).

    >>> store = FeatureStore.open("features/baby-clip")
    >>> store.views.shape == (len(store.view_names), store.n_items, store.dim)
    True
    """

    def __init__(self, path: Path, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> None:
        self.path = path
        self._arrays = arrays
        self._manifest = manifest

    @classmethod
    def open(cls, path: str | Path, mmap: bool = True) -> FeatureStore:
        """Open and validate a finished extraction folder."""
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise DataError(f"no {MANIFEST}: not a finished feature extraction (re-run the extraction to resume it)", path)
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", mpath, exc.lineno) from None
        arrays = {}
        for name in ARRAY_FILES:
            f = path / f"{name}.npy"
            if not f.is_file():
                raise DataError(f"missing {f.name}", path)
            try:
                arrays[name] = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise DataError(f"unreadable array ({exc})", f) from None
        store = cls(path, arrays, manifest)
        store._validate()
        return store

    def _validate(self) -> None:
        v, n, d = self.views.shape if self.views.ndim == 3 else (None, None, None)
        problems = []
        if v is None:
            problems.append(f"views.npy must be 3-D, found shape {self.views.shape}")
        else:
            if self.image.shape != (n, d):
                problems.append(f"image.npy shape {self.image.shape} != ({n}, {d})")
            if self.image_mask.shape != (n,):
                problems.append(f"image_mask.npy shape {self.image_mask.shape} != ({n},)")
            if self.similarity.shape != (n, v):
                problems.append(f"similarity.npy shape {self.similarity.shape} != ({n}, {v})")
            if self.item_ids.shape != (n,):
                problems.append(f"item_ids.npy shape {self.item_ids.shape} != ({n},)")
            if len(self.view_names) != v:
                problems.append(f"manifest lists {len(self.view_names)} views, views.npy has {v}")
        if problems:
            raise DataError("; ".join(problems), self.path)
        names = self.view_names
        check_finite(self.image, self.path / "image.npy", "image features", ("item row", "column"))
        check_finite(self.similarity, self.path / "similarity.npy", "view-image similarities", ("item row", "view"))
        found = find_non_finite(self.views)
        if found is not None:
            (v, row, col), value = found
            raise DataError(f"view {names[v]!r} (index {v}) holds {value} at item row {row}, column {col}; "
                            "features must be finite numbers", self.path / "views.npy")

    @property
    def image(self) -> np.ndarray:
        return self._arrays["image"]

    @property
    def image_mask(self) -> np.ndarray:
        return self._arrays["image_mask"]

    @property
    def views(self) -> np.ndarray:
        return self._arrays["views"]

    @property
    def similarity(self) -> np.ndarray:
        return self._arrays["similarity"]

    @property
    def item_ids(self) -> np.ndarray:
        return self._arrays["item_ids"]

    @property
    def manifest(self) -> dict[str, Any]:
        return self._manifest

    @property
    def view_names(self) -> list[str]:
        return list(self._manifest["views"]["names"])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def n_views(self) -> int:
        return int(self.views.shape[0])

    @property
    def dim(self) -> int:
        return int(self.views.shape[2])

    def view(self, name: str) -> np.ndarray:
        """One view's ``[N, d]`` embeddings by name."""
        if name not in self.view_names:
            raise DataError(f"no view {name!r}; views are {self.view_names}", self.path)
        return self.views[self.view_names.index(name)]

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, items={self.n_items}, views={self.view_names}, dim={self.dim})"
