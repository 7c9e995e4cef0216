"""(image, view texts) training items from a catalogue, and the held-out item split.

Items whose image file is missing are skipped and counted; no placeholder image is ever
substituted (a placeholder would teach the model that a grey square means anything).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cliper.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")


@dataclass(frozen=True)
class TrainingItem:
    asin: str
    image_path: Path
    texts: dict[str, str]  # view name -> prompt


class _KeyIds(Mapping):
    """An id map that gives every new catalogue key the next id: training needs no dataset ids."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def __getitem__(self, key: str) -> int:
        return self._ids.setdefault(key, len(self._ids))

    def get(self, key, default=None):  # noqa: D401 - Mapping API
        return self[key]

    def __iter__(self):
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def find_image(images_dir: Path, key: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        p = images_dir / f"{key}{suffix}"
        if p.is_file():
            return p
    return None


def build_training_items(
    catalog: str | Path,
    images_dir: str | Path,
    views: tuple[str, ...],
    view_spec: str = "cliper",
    fmt: str = "auto",
) -> tuple[list[TrainingItem], list[str]]:
    """Training items in catalogue order, and the keys skipped for lack of an image.

    Texts come from the views stage (``cliper.views``, preset or YAML ``view_spec``) so the
    model trains on exactly the prompts the feature extractor will feed it; ``views`` picks
    which of them are paired with images.
    """
    from cliper.catalog import read_catalog
    from cliper.views import build_views, load_view_set

    view_set = load_view_set(view_spec)
    unknown = [v for v in views if v not in view_set.names]
    if unknown or not views:
        raise ConfigError(f"unknown views {unknown}; the view spec {view_spec!r} has {view_set.names}")
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError("image folder not found", images_dir)
    result = read_catalog(catalog, fmt=fmt, id_map=_KeyIds())
    items, skipped = [], []
    for rec in sorted(result.items.values(), key=lambda r: r.item_id):
        img = find_image(images_dir, rec.key)
        if img is None:
            skipped.append(rec.key)
            continue
        texts = dict(zip(view_set.names, build_views(rec.fields, view_set)))
        items.append(TrainingItem(rec.key, img, {v: texts[v] for v in views}))
    if len(items) < 10:
        raise DataError(f"only {len(items)} items have an image in {images_dir}; need at least 10", catalog)
    return items, skipped


def held_out_mask(asins: list[str], fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out items, chosen by a seeded hash of the ASIN.

    Hashing (not position) keeps an item's side stable when the catalogue grows or is reordered.
    """
    if not 0.0 < fraction < 0.9:
        raise ConfigError(f"held_out_fraction must lie in (0, 0.9) (got {fraction})")
    keys = np.array(
        [int.from_bytes(hashlib.sha256(f"{seed}:{a}".encode()).digest()[:8], "big") for a in asins],
        dtype=np.uint64,
    )
    n_held = max(2, int(round(fraction * len(asins))))
    order = np.argsort(keys, kind="stable")
    mask = np.zeros(len(asins), dtype=bool)
    mask[order[:n_held]] = True
    return mask
