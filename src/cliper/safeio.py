"""Loading files that cliper (or someone else) wrote, without running code from them.

Pickle runs whatever a file tells it to, so nothing here unpickles arbitrary objects:
torch files load with ``weights_only=True`` (tensors, plain containers, numbers,
strings), NumPy files with ``allow_pickle=False``. A file that is damaged, truncated or
carries anything else gives one :class:`~cliper.errors.DataError` naming it.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from cliper.errors import DataError


def torch_load(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with failures as one ``DataError``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower() or "unsupported class" in str(exc).lower():  # an object reference
            raise DataError(f"refused to load this {what}: it holds Python objects other than tensors and plain "
                            "values, which could run code when unpickled (cliper never writes such files)",
                            path) from None
        raise DataError(f"unreadable {what} (damaged or not a torch file): {_first_line(exc)}", path) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, TypeError) as exc:
        raise DataError(f"unreadable {what} (truncated, damaged or not a torch file): {_first_line(exc)}",
                        path) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
