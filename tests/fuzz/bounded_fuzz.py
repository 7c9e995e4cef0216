"""Child process: the fuzz targets and hostile inputs under a hard address-space limit.

Usage: ``python bounded_fuzz.py LIMIT_MB EXAMPLES``. ``RLIMIT_AS`` is set to LIMIT_MB
first, so a reader that tries to grow past it gets a MemoryError (a failure here) instead
of swapping the machine. Prints one JSON line: peak RSS, examples run, hostile results.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
import time
import zlib

limit_mb, examples = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, resource.getrlimit(resource.RLIMIT_AS)[1]))

from fuzz_targets import _DIR, TARGETS, inputs  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

from cliper.catalog import load_id_map, read_catalog  # noqa: E402
from cliper.data.interactions import load_inter  # noqa: E402
from cliper.errors import CliperError  # noqa: E402
from cliper.images import decode_image  # noqa: E402
from cliper.runtime import peak_rss_mb  # noqa: E402

report: dict = {"limit_mb": limit_mb, "examples_per_reader": examples, "hostile": {}}

def fuzz(fn, seed: bytes) -> None:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(inputs(seed))
    def check(case):
        fn(*case)

    check()


for name, (fn, seed) in TARGETS.items():
    fuzz(fn, seed)


def hostile(name: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        out = fn()
        what = f"ImageFailure({out.reason})" if hasattr(out, "reason") else (
            repr(out) if isinstance(out, tuple) else type(out).__name__)
    except CliperError as exc:
        what = f"CliperError: {exc}"
    report["hostile"][name] = {"result": what[:300], "seconds": round(time.perf_counter() - t0, 4)}


rows = "userID\titemID\tx_label\n" + "".join(f"{i % 300}\t{(i * 7) % 100}\t0\n" for i in range(3000))
for label, big in (("inter_id_2e9", "2000000000"), ("inter_id_1e12", "1000000000000"),
                   ("inter_id_beyond_int64", "99999999999999999999999")):
    p = _DIR / f"{label}.inter"
    p.write_text(rows + f"5\t{big}\t0\n")
    hostile(label, lambda p=p: load_inter(p))
p = _DIR / "map_big.tsv"
p.write_text("asin\titemID\nA\t0\nB\t1000000000000\n")
hostile("id_map_id_1e12", lambda: load_id_map(p))
p = _DIR / "cat_big.jsonl"
p.write_text('{"itemID": 0, "title": "a"}\n{"itemID": 1000000000000, "title": "b"}\n')
hostile("catalog_itemID_1e12", lambda: read_catalog(p, fmt="jsonl"))
p = _DIR / "deep.json"
p.write_text("{'asin': 'A0', 'title': " + "[" * 100_000 + "\n{'asin': 'A1', 'title': 'ok'}\n")
hostile("catalog_nested_100k", lambda: read_catalog(p, fmt="amazon2014", id_map={"A0": 0, "A1": 1}))

def black_png(width: int, height: int) -> bytes:
    """A valid greyscale PNG of zeros, compressed row by row (never the whole image in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp, row, parts = zlib.compressobj(9), b"\x00" * (width + 1), []
    for _ in range(height):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


png = black_png(14_000, 14_000)  # 196 megapixels in ~190 KB
report["hostile_png_bytes"] = len(png)
hostile("png_196_megapixels_x4", lambda: [decode_image(png) for _ in range(4)][-1])
png2 = black_png(7_000, 6_500)  # 45.5 MP: over cliper's cap, under Pillow's
hostile("png_45_megapixels", lambda: decode_image(png2))
png3 = black_png(3_000, 2_000)  # 6 MP: decoded, then reduced for the encoder
hostile("png_6_megapixels", lambda: decode_image(png3).size)

report["maxrss_mb"] = round(peak_rss_mb(), 1)
print(json.dumps(report))
