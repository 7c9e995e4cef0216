"""Small hand-made raw logs shared by the data tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def make_raw_frame(seed: int = 0, n_users: int = 40, n_items: int = 30) -> pd.DataFrame:
    """A raw log with Amazon-style column names, varied user degrees and a few duplicates."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        deg = int(rng.integers(1, 22))
        for i in rng.choice(n_items, size=deg, replace=False):
            rows.append((f"A{u:03d}X", f"B00{i:03d}", int(1_300_000_000 + rng.integers(0, 10**7)), float(rng.integers(1, 6))))
    df = pd.DataFrame(rows, columns=["reviewerID", "asin", "unixReviewTime", "overall"])
    dups = df.sample(5, random_state=seed).assign(unixReviewTime=lambda d: d.unixReviewTime + 50)
    return pd.concat([df, dups], ignore_index=True)


@pytest.fixture
def raw_frame() -> pd.DataFrame:
    return make_raw_frame()
