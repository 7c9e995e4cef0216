"""Process-level settings that make CPU training fast on small shared machines."""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB. ``VmHWM`` is per address space, so unlike
    ``ru_maxrss`` it does not carry the parent's size over fork + exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def keep_freed_memory() -> bool:
    """Ask glibc to keep large freed blocks in the heap.

    By default glibc serves blocks over 32 MB with fresh ``mmap`` calls and hands them
    back on free, so every large temporary (a [N, 4096] projection, a score chunk)
    pays page faults again; keeping them roughly halves step times of the feature
    models. Linux/glibc only; elsewhere it does nothing and returns False.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, (1 << 31) - 1)  # M_TRIM_THRESHOLD
        return True
    except (OSError, AttributeError):
        return False


def set_threads(n: int | None) -> None:
    """Torch intra-op threads: ``n``, else ``$CLIPER_THREADS``, else torch's default."""
    import torch

    if not n:
        raw = os.environ.get("CLIPER_THREADS", "").strip()
        try:
            n = int(raw or 0)
        except ValueError:
            from cliper.errors import ConfigError

            raise ConfigError(f"CLIPER_THREADS must be a positive integer, got {raw!r}") from None
    if n > 0:
        torch.set_num_threads(n)
