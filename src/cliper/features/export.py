"""Export a feature store to MMRec's files so the features drop into other toolkits.

MMRec (and LATTICE, FREEDOM, BM3 ... built on it) read ``image_feat.npy`` and
``text_feat.npy``, float32 ``[N, d]`` rows in item-id order. The text file holds
the *fused* views (``cliper.fusion.fuse_views``), the image file the image
embeddings as stored (missing-image rows filled by the store's rule).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cliper.errors import ConfigError
from cliper.features.store import FeatureStore, atomic_save_npy
from cliper.fusion import fuse_views

def export_mmrec(store: FeatureStore | str | Path, out_dir: str | Path, method: str = "sa", tau: float = 0.1,
                 views: list[str] | None = None) -> dict[str, Path]:
    """Write ``image_feat.npy`` and ``text_feat.npy`` into ``out_dir``; return their paths.

    ``method`` is a :func:`cliper.fusion.fuse_views` method (``sa``, ``sum``,
    ``concat``, ``mean``); ``views`` keeps only the named views (view ablation).
    """
    if not isinstance(store, FeatureStore):
        store = FeatureStore.open(store)
    idx = list(range(store.n_views))
    if views is not None:
        unknown = [v for v in views if v not in store.view_names]
        if unknown or not views:
            raise ConfigError(f"unknown or empty view selection {views}; views are {store.view_names}")
        idx = [store.view_names.index(v) for v in views]
    stacked = np.asarray(store.views[idx], dtype=np.float32)
    sim = np.asarray(store.similarity[:, idx], dtype=np.float32)
    text = np.asarray(fuse_views(stacked, sim, method=method, tau=tau), dtype=np.float32)
    if text.shape[0] != store.n_items:
        raise ConfigError(f"fuse_views returned {text.shape[0]} rows for {store.n_items} items")
    out = Path(out_dir)
    paths = {"image_feat": out / "image_feat.npy", "text_feat": out / "text_feat.npy"}
    atomic_save_npy(paths["image_feat"], np.asarray(store.image, dtype=np.float32))
    atomic_save_npy(paths["text_feat"], text)
    return paths
