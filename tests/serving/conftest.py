"""A tiny trained CLIPER run (demo catalogue, tiny CLIP, feature store, VBPR) and its bundle, built once."""

from __future__ import annotations

import pytest


def train_demo_run(root, model: str = "vbpr", n_items: int = 60, n_users: int = 80, epochs: int = 3):
    """(catalogue, run folder) of a few epochs of ``model`` on CLIP features of a small demo catalogue."""
    from cliper.config.loader import load_config
    from cliper.demo import generate_demo_catalog
    from cliper.encoders.tiny import save_tiny_clip
    from cliper.features.extract import extract_features
    from cliper.training.runner import train_run

    cat = generate_demo_catalog(root / "demo", n_items, n_users, 0, overwrite=True, progress=False)
    clip = save_tiny_clip(root / "clip", seed=0)
    store = root / "features"
    extract_features(cat.meta, store, str(clip), id_map=cat.item_mapping, images=cat.images, device="cpu",
                     progress=False)
    cfg = load_config(files=[], overrides=[f"dataset.path={cat.inter}", f"model.name={model}",
                                           f"features.store={store}", f"train.epochs={epochs}", "train.batch_size=256",
                                           "threads=1", "eval.topk=[10,20]"])
    run = root / f"run-{model}"
    train_run(cfg, run, progress=False)
    return cat, run


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    cat, run = train_demo_run(root)
    return root, cat, run


@pytest.fixture(scope="session")
def demo_bundle(demo_run):
    from cliper.serving.export import export_run

    root, cat, run = demo_run
    return export_run(run, root / "bundle")
