"""Atomic checkpoint files: a crash mid-write never leaves a corrupt checkpoint.

Checkpoints hold only tensors and plain values, and are read back with torch's
``weights_only`` loader (:func:`cliper.safeio.torch_load`): a planted pickle payload is
refused, never run, and a damaged file gives one error line naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from cliper import faults
from cliper.safeio import torch_load


def save_atomic(obj: Any, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    faults.kill_point("checkpoint.tmp_written")
    os.replace(tmp, path)


def load(path: Path) -> Any:
    return torch_load(path, "checkpoint")
