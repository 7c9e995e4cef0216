"""Session fixtures of the safety tests: a tiny trained run, a tiny catalogue with a tiny CLIP."""

from __future__ import annotations

import pytest
from safety_helpers import config, write_inputs


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A finished 3-epoch VBPR run on vanilla feature files: (inputs, run folder). Copy it before changing it."""
    from cliper.training.runner import train_run

    root = tmp_path_factory.mktemp("trained")
    inputs = write_inputs(root / "in")
    train_run(config(inputs, "vbpr", epochs=3), root / "run", progress=False)
    return inputs, root / "run"


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """A 60-item synthetic catalogue and a tiny CLIP folder (random weights) for extraction."""
    from cliper.demo import generate_demo_catalog
    from cliper.encoders.tiny import save_tiny_clip

    root = tmp_path_factory.mktemp("demo")
    cat = generate_demo_catalog(root / "cat", n_items=60, n_users=30, seed=5, progress=False)
    clip = save_tiny_clip(root / "clip", seed=0)
    return cat, clip
