"""Atomic checkpoint files: a crash mid-write never leaves a corrupt checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_atomic(obj: Any, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=False)
