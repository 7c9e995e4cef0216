"""Run another benchmark script with the allocator as the coming default sets it.

``cap_freed_memory(64)`` plus a 64 MiB mmap threshold (issue 13: per-batch temporaries under
64 MiB are then reused instead of page-faulted in every batch), set before torch allocates;
prints the minor page faults of the whole run to stderr.

    python benchmarks/probe_mmap64.py benchmarks/profile_epoch.py --model vbpr --threads 1 --top 15
"""

from __future__ import annotations

import ctypes
import resource
import runpy
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: probe_mmap64.py SCRIPT [ARGS...]")
    from cliper.runtime import cap_freed_memory

    cap_freed_memory(64)
    ctypes.CDLL("libc.so.6").mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
    script = Path(sys.argv[1])
    sys.argv = sys.argv[1:]
    sys.path.insert(0, str(script.resolve().parent))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        print(f"minor page faults: {resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}", file=sys.stderr)


if __name__ == "__main__":
    main()
