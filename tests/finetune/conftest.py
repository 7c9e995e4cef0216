from __future__ import annotations

import pytest

from cliper.demo import generate_demo_catalog


@pytest.fixture(scope="session")
def small_catalog(tmp_path_factory):
    """A 240-item synthetic catalogue (users are irrelevant to CLIP training)."""
    return generate_demo_catalog(tmp_path_factory.mktemp("ft") / "demo", n_items=240, n_users=20, seed=11,
                                 progress=False)


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory):
    return generate_demo_catalog(tmp_path_factory.mktemp("ft") / "tiny", n_items=60, n_users=10, seed=5,
                                 progress=False)
