"""Builders of a tiny demo run for the serving tests (imported by conftest.py and test modules)."""

from __future__ import annotations


def make_demo_store(root, n_items: int = 60, n_users: int = 80):
    """(catalogue, feature store) of a small demo catalogue encoded by a tiny random CLIP."""
    from cliper.demo import generate_demo_catalog
    from cliper.encoders.tiny import save_tiny_clip
    from cliper.features.extract import extract_features

    cat = generate_demo_catalog(root / "demo", n_items, n_users, 0, overwrite=True, progress=False)
    clip = save_tiny_clip(root / "clip", seed=0)
    store = root / "features"
    extract_features(cat.meta, store, str(clip), id_map=cat.item_mapping, images=cat.images, device="cpu",
                     progress=False)
    return cat, store


def train_demo_run(root, model: str = "vbpr", epochs: int = 3, cat=None, store=None):
    """(catalogue, run folder) of a few epochs of ``model`` on the demo store's CLIP features."""
    from cliper.config.loader import load_config
    from cliper.training.runner import train_run

    if cat is None:
        cat, store = make_demo_store(root)
    cfg = load_config(files=[], overrides=[f"dataset.path={cat.inter}", f"model.name={model}",
                                           f"features.store={store}", f"train.epochs={epochs}", "train.batch_size=256",
                                           "threads=1", "eval.topk=[10,20]"])
    run = root / f"run-{model}"
    train_run(cfg, run, progress=False)
    return cat, run
