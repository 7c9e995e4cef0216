"""Atomic file writes: a temp file beside the target, renamed over it only when complete.

A failed write (disk full, read-only file system, Ctrl-C) removes its temp file, so
nothing half-written and no stray ``*.tmp`` is left, and the error names the target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cliper.errors import writing


def _file_mode() -> int:
    """0o666 minus the process umask: what a plain ``open(path, "w")`` would give."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], suffix: str = ".tmp") -> None:
    """Call ``write(fh)`` on a temp file, then rename it to ``path``; on any failure remove the temp file."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, _MODE)  # mkstemp creates 0600; finished files get normal permissions
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """UTF-8 text with ``\\n`` line ends, written atomically."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
