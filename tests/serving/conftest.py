"""A tiny trained CLIPER run (demo catalogue, tiny CLIP, feature store, VBPR) and its bundle, built once."""

from __future__ import annotations

import pytest
from serving_helpers import make_demo_store, train_demo_run


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    cat, store = make_demo_store(root)
    return root, cat, store


@pytest.fixture(scope="session")
def demo_run(demo_store):
    root, cat, store = demo_store
    _, run = train_demo_run(root, cat=cat, store=store)
    return root, cat, run


@pytest.fixture(scope="session")
def demo_bundle(demo_run):
    from cliper.serving.export import export_run

    root, cat, run = demo_run
    return export_run(run, root / "bundle")
