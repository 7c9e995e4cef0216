"""Shared fixtures: tiny generated graphs, the shared real data (skipped when absent)."""

from __future__ import annotations

import pytest
import torch

from cliper.paths import shared_dataset
from cliper.testing import tiny_dataset


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CLIPER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    torch.manual_seed(0)


@pytest.fixture
def tiny():
    return tiny_dataset()


@pytest.fixture
def baby_dir():
    p = shared_dataset("amazon-baby")
    if p is None:
        pytest.skip("shared Amazon Baby data not present")
    return p


@pytest.fixture
def sports_dir():
    p = shared_dataset("amazon-sports")
    if p is None:
        pytest.skip("shared Amazon Sports data not present")
    return p
