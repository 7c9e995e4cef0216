"""Tiny generated datasets and features for tests and smoke runs (not real data).

The model-contract checks every recommender should pass live in ``cliper.testing.backbones``.
"""

from __future__ import annotations

import numpy as np

from cliper.data.interactions import InteractionData, Split
from cliper.features.item_features import ItemFeatures


def tiny_dataset(n_users: int = 40, n_items: int = 30, per_user: int = 8, seed: int = 0) -> InteractionData:
    """A random graph where every user has >= 1 train, valid and test item (per_user >= 3)."""
    rng = np.random.default_rng(seed)
    splits = {"train": ([], []), "valid": ([], []), "test": ([], [])}
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        for name, chunk in (("valid", items[:1]), ("test", items[1:2]), ("train", items[2:])):
            splits[name][0].extend([u] * len(chunk))
            splits[name][1].extend(chunk.tolist())
    made = {k: Split(np.array(u, dtype=np.int64), np.array(i, dtype=np.int64)) for k, (u, i) in splits.items()}
    return InteractionData(n_users=n_users, n_items=n_items, name="tiny", **made)


def tiny_features(
    n_items: int = 30, image_dim: int = 16, text_dim: int = 12, seed: int = 0, views: int | None = None,
    fusion: str = "sa",
) -> ItemFeatures:
    """Seeded random features; with ``views`` the text comes as V view matrices fused by ``fusion``."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n_items, image_dim)).astype(np.float32)
    if views is None:
        return ItemFeatures(image=image, text=rng.standard_normal((n_items, text_dim)).astype(np.float32))
    from cliper.fusion import build_fusion

    v = rng.standard_normal((views, n_items, text_dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    sim = rng.uniform(-1, 1, size=(n_items, views)).astype(np.float32)
    return ItemFeatures(image=image, views=v, similarity=sim, fusion=build_fusion(fusion, views, text_dim))


def write_inter(data: InteractionData, path) -> "Path":
    """Write ``data`` as an MMRec ``.inter`` file (header ``userID itemID x_label``)."""
    from pathlib import Path

    path = Path(path)
    lines = ["userID\titemID\tx_label"]
    for label, split in enumerate((data.train, data.valid, data.test)):
        lines += [f"{u}\t{i}\t{label}" for u, i in zip(split.users, split.items)]
    path.write_text("\n".join(lines) + "\n")
    return path
