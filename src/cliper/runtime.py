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


def keep_freed_memory(enable: bool = True) -> bool:
    """Ask glibc to keep ALL large freed blocks in the heap (``runtime.keep_freed_memory``, OFF by default;
    the default is :func:`cap_freed_memory`'s bounded retention).

    By default glibc serves blocks over 32 MB with fresh ``mmap`` calls and hands them
    back on free, so every large temporary (a [N, 4096] projection, a score chunk)
    pays page faults again; keeping them saves those faults but the process never
    returns the memory, so its peak resident size grows (measured in
    docs/training.md#memory). ``enable=False`` restores glibc's defaults. Linux/glibc
    only; elsewhere it does nothing and returns False.
    """
    if enable:
        return _malloc_thresholds(1 << 30, (1 << 31) - 1)
    return _malloc_thresholds(128 * 1024, 128 * 1024)  # glibc's defaults (dynamic thresholds start at 128 KiB)


def _malloc_thresholds(mmap_bytes: int, trim_bytes: int) -> bool:
    """glibc's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD; False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, int(mmap_bytes))  # M_MMAP_THRESHOLD
        libc.mallopt(-1, int(trim_bytes))  # M_TRIM_THRESHOLD
        return True
    except (OSError, AttributeError):
        return False


def cap_freed_memory(cap_mib: int | None = 64) -> bool:
    """Let glibc keep at most ``cap_mib`` MiB of freed heap (``runtime.freed_memory_cap_mib``, the default).

    glibc's dynamic thresholds raise the mmap threshold to the size of each freed block but trim
    the heap top whenever more than twice that is free, so the training loop's per-batch
    temporaries (a few MB each) were handed back and faulted in again every batch: about 250,000
    page faults per LightGCN epoch on Baby. Fixing the mmap threshold at 32 MiB (glibc's own
    ceiling for the dynamic one) and the trim threshold at ``cap_mib`` keeps those blocks, while
    never holding more than ``cap_mib`` of freed memory at the heap top (measured in
    docs/training.md#memory). ``None`` leaves glibc's dynamic defaults. Linux/glibc only.
    """
    if cap_mib is None:
        return False
    return _malloc_thresholds(32 << 20, int(cap_mib) << 20)


HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"  # torch's CPU allocator: madvise(MADV_HUGEPAGE) on blocks >= 2 MiB


def use_huge_pages(enable: bool = True) -> bool:
    """Let torch back its CPU blocks of 2 MiB and more with transparent huge pages
    (``runtime.huge_pages``, the default); returns whether torch took the setting.

    A block over glibc's 32 MiB mmap threshold is a fresh mapping on every allocation, faulted in
    4 KiB at a time: a batch's gather of 2048 feature rows x 4096 floats alone is 8,192 faults,
    and FREEDOM took 25,000 faults per Baby batch, LATTICE 63,000. Huge pages fault 2 MiB at a
    time (FREEDOM: 1,700 per batch, 40% less CPU time per batch), and the mappings are still
    returned on free, so the heap does not grow (raising glibc's mmap threshold instead
    fragments it: docs/training.md#memory). Torch reads the switch once, at its first tensor
    allocation: call this before any tensor exists (``cliper train`` does); an explicit
    ``THP_MEM_ALLOC_ENABLE`` in the environment wins. Effective where the kernel's
    transparent_hugepage mode is ``madvise`` or ``always``.
    """
    os.environ.setdefault(HUGE_PAGES_ENV, "1" if enable else "0")
    return huge_pages_active()


def huge_pages_active() -> bool:
    """Whether torch's allocator takes its huge-page path in this process: that path page-aligns
    every block of 2 MiB and more, glibc's own 64-byte alignment almost never does (three 4 MiB
    probes, all page-aligned)."""
    import torch

    probes = [torch.empty(1 << 20) for _ in range(3)]
    return all(t.data_ptr() % 4096 == 0 for t in probes)


def apply_memory_settings(keep_freed_memory_: bool = False, freed_memory_cap_mib: int | None = 64,
                          huge_pages: bool = True) -> None:
    """The ``runtime`` section: glibc's freed-memory thresholds, then torch's huge pages."""
    if keep_freed_memory_:
        keep_freed_memory(True)
    else:
        cap_freed_memory(freed_memory_cap_mib)
    if not use_huge_pages(huge_pages) and huge_pages:
        log.debug("huge pages not in effect: torch had allocated before the runtime settings were applied")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(cpus: int | None = None) -> int:
    """The thread count used when neither ``threads`` nor ``$CLIPER_THREADS`` is set.

    Rule: a quarter of the usable CPUs, at least 1 and at most 8 (1 on machines of up to
    7 CPUs). Torch's own default (one thread per core) is the pathological case on a
    shared machine: OpenMP threads spin waiting for a busy core, and on a loaded 2-core
    machine 2 threads were 5-20x slower than 1. Leaving three quarters of the cores to
    others keeps a thread per core free even when the machine is busy; the count depends
    only on the machine, never on its load, so a seeded rerun on it repeats bit for bit.
    """
    n = usable_cpus() if cpus is None else cpus
    return max(1, min(8, n // 4))


def set_threads(n: int | None) -> int:
    """Set torch's intra-op threads: ``n``, else ``$CLIPER_THREADS``, else :func:`default_threads`;
    returns the count set."""
    import torch

    if not n:
        raw = os.environ.get("CLIPER_THREADS", "").strip()
        try:
            n = int(raw or 0)
        except ValueError:
            from cliper.errors import ConfigError

            raise ConfigError(f"CLIPER_THREADS must be a positive integer, got {raw!r}") from None
        if n < 0:
            from cliper.errors import ConfigError

            raise ConfigError(f"CLIPER_THREADS must be a positive integer, got {raw!r}")
    n = n or default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def native_cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX, as oneDNN reports it).

    Without it torch emulates bf16 products: on the project's AVX2 EPYC machines VBPR's batch
    products took 6.4 s in bf16 against 65 ms in fp32 (``benchmarks/probe_gemm_floor.py``, 1 thread),
    so ``train.precision: bf16`` would make a run about a hundred times slower, never faster.
    """
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: assume emulation
        return False


def cpu_capability() -> str:
    """The vector instruction set torch's CPU kernels dispatch to here (e.g. ``AVX2``, ``AVX512``)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:
        return "unknown"
