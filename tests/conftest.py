"""Shared fixtures: tiny generated graphs, the shared real data (skipped when absent)."""

from __future__ import annotations

import os

import pytest
import torch

# Test graphs are tiny: one thread avoids synchronisation overhead (and oversubscription on a
# shared 2-core machine); subprocesses started by tests inherit it through CLIPER_THREADS.
torch.set_num_threads(1)
os.environ["CLIPER_THREADS"] = "1"

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


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray instance (2 CPUs) for the whole session; skipped without Ray."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
