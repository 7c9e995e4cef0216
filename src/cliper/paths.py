"""Where the shared real data lives (never committed into the project)."""

from __future__ import annotations

import os
from pathlib import Path

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """The folder holding the real Amazon graphs, or None when absent.

    ``CLIPER_SHARED_DATA`` wins; otherwise ``../shared/data`` beside the project root.
    """
    env = os.environ.get("CLIPER_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(_PROJECT_ROOT.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


def shared_dataset(name: str) -> Path | None:
    """``amazon-baby`` / ``amazon-sports`` folder under the shared data, or None."""
    root = shared_data_dir()
    if root is None:
        return None
    p = root / name
    return p if p.is_dir() else None
