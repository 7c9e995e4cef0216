"""Fixtures for the experiment tests (helpers live in exp_helpers.py, importable by name)."""

from __future__ import annotations

import pytest

from cliper.testing import tiny_dataset
from exp_helpers import write_inter, write_store


@pytest.fixture
def tiny_exp(tmp_path):
    """(dataset folder, store folder) for a 50-user, 40-item graph."""
    data = tiny_dataset(n_users=50, n_items=40, per_user=10, seed=3)
    ds = tmp_path / "tiny"
    write_inter(data, ds / "tiny.inter")
    store = write_store(tmp_path / "store", data.n_items, seed=1)
    return ds, store
