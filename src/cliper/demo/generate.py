"""Write a complete synthetic catalogue in the same on-disk formats as the real data.

Outputs (all labelled synthetic): ``meta_demo.jsonl`` (Amazon-2014 schema), ``images/<ASIN>.jpg``,
``demo.inter`` (MMRec split file), ``i_id_mapping.tsv``, ``u_id_mapping.tsv``,
``items_latent.jsonl`` (the hidden attributes, for tests and analysis), ``manifest.json``,
``README.md`` and ``SYNTHETIC.txt``. Every random draw descends from one seed through
independent streams, so a seed gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cliper.atomic import atomic_write_text
from cliper.demo import vocabulary as V
from cliper.demo.drawing import draw_item, jpeg_bytes
from cliper.demo.interactions import (
    AffinityWeights,
    affinity_matrix,
    ensure_train_coverage,
    sample_choices,
    split_labels,
)
from cliper.demo.latent import sample_brands, sample_items, sample_users
from cliper.demo.readme import readme_text, synthetic_notice
from cliper.demo.text_fields import make_record
from cliper.errors import ConfigError

log = logging.getLogger(__name__)

GENERATOR_VERSION = "2"  # 2: field lengths and missing rates matched to the real Amazon sample
DEFAULT_ITEMS = 800
DEFAULT_USERS = 1200
DEFAULT_MEAN_INTERACTIONS = 18.0
DEFAULT_IMAGE_SIZE = 64
META_NAME = "meta_demo.jsonl"
INTER_NAME = "demo.inter"
SYNTHETIC_NAME = "SYNTHETIC.txt"


@dataclass(frozen=True)
class DemoCatalog:
    """Paths of a generated catalogue and a few figures about it."""

    root: Path
    meta: Path
    images: Path
    inter: Path
    item_mapping: Path
    user_mapping: Path
    latent: Path
    manifest: Path
    readme: Path
    synthetic_notice: Path
    stats: dict = field(default_factory=dict)


def _paths(root: Path) -> dict[str, Path]:
    return dict(
        root=root,
        meta=root / META_NAME,
        images=root / "images",
        inter=root / INTER_NAME,
        item_mapping=root / "i_id_mapping.tsv",
        user_mapping=root / "u_id_mapping.tsv",
        latent=root / "items_latent.jsonl",
        manifest=root / "manifest.json",
        readme=root / "README.md",
        synthetic_notice=root / SYNTHETIC_NAME,
    )


def _write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def _check_args(n_items: int, n_users: int, mean_interactions: float, image_size: int) -> None:
    if n_items < 20:
        raise ConfigError(f"--items must be at least 20 (got {n_items})")
    if n_users < 2:
        raise ConfigError(f"--users must be at least 2 (got {n_users})")
    if not 5 <= mean_interactions <= n_items / 2:
        raise ConfigError(f"mean interactions per user must lie in [5, items/2] (got {mean_interactions})")
    if not 16 <= image_size <= 512:
        raise ConfigError(f"image size must lie in [16, 512] (got {image_size})")


def generate_demo_catalog(
    out_dir: str | Path,
    n_items: int = DEFAULT_ITEMS,
    n_users: int = DEFAULT_USERS,
    seed: int = 0,
    *,
    mean_interactions: float = DEFAULT_MEAN_INTERACTIONS,
    image_size: int = DEFAULT_IMAGE_SIZE,
    missing_image_fraction: float = 0.015,
    overwrite: bool = False,
    progress: bool = True,
) -> DemoCatalog:
    """Generate the synthetic demo catalogue into ``out_dir`` and return its paths.

    Raises ConfigError for bad sizes, or when ``out_dir`` already holds a catalogue and
    ``overwrite`` is False.
    """
    _check_args(n_items, n_users, mean_interactions, image_size)
    root = Path(out_dir)
    p = _paths(root)
    if p["meta"].exists() and not overwrite:
        raise ConfigError(f"{root} already holds a catalogue ({META_NAME}); pass overwrite (--force) to replace it")
    root.mkdir(parents=True, exist_ok=True)
    p["images"].mkdir(exist_ok=True)
    for old in p["images"].glob("*.jpg"):  # a previous catalogue's images must not linger
        old.unlink()

    streams = np.random.SeedSequence(seed).spawn(7)
    rng_brand, rng_item, rng_text, rng_image, rng_user, rng_choice, rng_split = (
        np.random.default_rng(s) for s in streams
    )
    brands = sample_brands(rng_brand)
    items = sample_items(rng_item, n_items, brands)
    # MMRec item ids: rank of the ASIN in sorted order.
    items = sorted(items, key=lambda it: it.asin)

    n_missing = int(round(missing_image_fraction * n_items))
    missing = set(int(i) for i in rng_image.choice(n_items, size=n_missing, replace=False)) if n_missing else set()
    # Half of the missing images also lack a URL; the rest have a URL whose download "failed".
    missing_no_url = set(sorted(missing)[: n_missing // 2])

    records = []
    for item_id, item in enumerate(items):
        records.append(make_record(rng_text, item, brands[item.brand], item_id, item_id not in missing_no_url))
    _write_text(p["meta"], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    for item_id, item in enumerate(tqdm(items, desc="demo images", unit="img", disable=not progress)):
        img = draw_item(rng_image, item, brands[item.brand], image_size)  # drawn always: keeps streams aligned
        if item_id in missing:
            continue
        (p["images"] / f"{item.asin}.jpg").write_bytes(jpeg_bytes(img))

    latent_rows = []
    for item_id, item in enumerate(items):
        b = brands[item.brand]
        latent_rows.append(
            {
                "itemID": item_id, "asin": item.asin, "synthetic": True, "category": item.category,
                "product": item.product.noun, "shape": item.shape, "colour": item.colour,
                "pattern": item.pattern, "brand": b.name, "tier": item.tier, "material": item.material,
                "quality": round(item.quality, 6), "has_image": item_id not in missing,
            }
        )
    _write_text(p["latent"], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in latent_rows))

    users = sample_users(rng_user, n_users, brands, mean_interactions)
    weights = AffinityWeights()
    aff = affinity_matrix(rng_choice, users, items, weights)
    activity = np.array([u.activity for u in users])
    choices = sample_choices(rng_choice, aff, activity, weights.temperature)

    u_col, i_col, l_col = [], [], []
    for u, chosen in enumerate(choices):
        chosen = np.sort(chosen)
        u_col.append(np.full(chosen.size, u))
        i_col.append(chosen)
        l_col.append(split_labels(rng_split, chosen.size))
    users_arr, items_arr = np.concatenate(u_col), np.concatenate(i_col)
    labels = ensure_train_coverage(users_arr, items_arr, np.concatenate(l_col))
    order = np.lexsort((items_arr, labels, users_arr))
    lines = ["userID\titemID\tx_label\n"]
    lines += [f"{u}\t{i}\t{lab}\n" for u, i, lab in zip(users_arr[order], items_arr[order], labels[order])]
    _write_text(p["inter"], "".join(lines))
    _write_text(p["item_mapping"], "asin\titemID\n" + "".join(f"{it.asin}\t{k}\n" for k, it in enumerate(items)))
    _write_text(p["user_mapping"], "user_id\tuserID\n" + "".join(f"{u.reviewer_id}\t{k}\n" for k, u in enumerate(users)))

    stats = {
        "items": n_items,
        "users": n_users,
        "interactions": int(labels.size),
        "train": int((labels == 0).sum()),
        "valid": int((labels == 1).sum()),
        "test": int((labels == 2).sum()),
        "items_without_image": len(missing),
        "items_without_train": int(n_items - np.unique(items_arr[labels == 0]).size),
        "image_size": image_size,
    }
    _write_text(p["synthetic_notice"], synthetic_notice(seed))
    _write_text(p["readme"], readme_text(seed, stats))
    files = [p["meta"], p["inter"], p["item_mapping"], p["user_mapping"], p["latent"]]
    manifest = {
        "synthetic": True,
        "generator": "cliper.demo",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "parameters": {
            "n_items": n_items, "n_users": n_users, "mean_interactions": mean_interactions,
            "image_size": image_size, "missing_image_fraction": missing_image_fraction,
            "affinity_weights": asdict(weights),
        },
        "stats": stats,
        "sha256": {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files},
    }
    _write_text(p["manifest"], json.dumps(manifest, indent=2) + "\n")
    log.info("wrote synthetic demo catalogue to %s (%d items, %d users, %d interactions)",
             root, n_items, n_users, labels.size)
    return DemoCatalog(**p, stats=stats)


def is_synthetic_catalog(path: str | Path) -> bool:
    """True when ``path`` (a catalogue file or folder) belongs to a generated demo catalogue."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return (folder / SYNTHETIC_NAME).exists()
