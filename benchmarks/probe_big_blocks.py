"""Why ``cap_freed_memory`` keeps glibc's mmap threshold at 32 MiB: a block above it is mapped afresh on
every allocation (page faults), but letting such blocks come from the heap fragments it.

One fresh process per setting allocates and frees a ``--mib`` MiB float tensor ``--rounds`` times (a
per-batch temporary such as VBPR's gather of a batch's feature rows), touching each page once, and
prints the minor page faults and the resident size before and after. ``default`` is cliper train's
glibc setting (``runtime.freed_memory_cap_mib: 64``: mmap threshold 32 MiB, trim threshold 64 MiB);
``heapN`` also raises the mmap threshold to N MiB, so the block comes from the heap; a ``+thp`` suffix
turns torch's transparent huge pages on (``runtime.huge_pages: true``, cliper train's default is
``default+thp``), without it they are off.

    python benchmarks/probe_big_blocks.py --mib 48 --rounds 12 --modes default heap64 heap128 default+thp
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = """
import ctypes, json, resource, sys
from cliper.runtime import cap_freed_memory
from cliper.runtime import use_huge_pages
mode, mib, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
glibc_mode, _, thp = mode.partition("+")
cap_freed_memory(64)
if glibc_mode.startswith("heap"):
    ctypes.CDLL("libc.so.6").mallopt(-3, int(glibc_mode[4:]) << 20)  # M_MMAP_THRESHOLD
use_huge_pages(thp == "thp")
import torch
def rss_mib():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20
before = rss_mib()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(rounds):
    torch.empty(mib << 18).fill_(1.0)
    [object() for _ in range(100)]  # small allocations in between, as any loop makes
print(json.dumps({"mode": mode, "mib": mib, "rounds": rounds,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0,
                  "pages_per_block": (mib << 20) // 4096, "rss_before_mib": round(before),
                  "rss_after_mib": round(rss_mib())}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--modes", nargs="+", default=["default", "heap64", "heap128", "default+thp"])
    args = ap.parse_args()
    for mode in args.modes:
        out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(args.mib), str(args.rounds)],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
