"""Fuzz targets: feed bytes to one reader; a result or a CliperError is fine, anything else is a bug.

Shared by the in-process property tests (``test_fuzz_readers.py``) and the memory-bounded
child process (``bounded_fuzz.py``). Each target writes the bytes to a file named as the
reader expects (``.gz`` variants decompress on the fly) and calls the public reader.
"""

from __future__ import annotations

import atexit
import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from cliper.catalog import load_id_map, read_catalog
from cliper.data.interactions import load_inter
from cliper.data.raw import read_raw
from cliper.errors import CliperError

EXAMPLES = int(os.environ.get("CLIPER_FUZZ_EXAMPLES", "200"))  # per reader; docs/reliability.md
_DIR = Path(tempfile.mkdtemp(prefix="cliper-fuzz-"))
atexit.register(shutil.rmtree, _DIR, True)


class MemoryBlowUp(AssertionError):
    """A reader ran out of memory (and said so politely): on a small input that is still a bug."""


# ---------------------------------------------------------------- valid seeds to mutate
INTER = ("userID\titemID\tx_label\n" + "".join(f"{u}\t{(u + k) % 7}\t{(0, 0, 0, 1, 2)[k]}\n"
                                               for u in range(6) for k in range(5))).encode()
RAW_CSV = ("user_id,item_id,timestamp,rating\n" + "".join(f"U{u},I{(u * 3 + k) % 9},{1600000000 + k},{k % 5 + 1}\n"
                                                         for u in range(8) for k in range(4))).encode()
RAW_JSONL = "".join(json.dumps({"reviewerID": f"U{u}", "asin": f"I{k}", "unixReviewTime": 1600000000 + k,
                                "overall": 4.0}) + "\n" for u in range(6) for k in range(3)).encode()
AMAZON2014 = "".join(
    str({"asin": f"A{i}", "title": f"Soft Beads {i}", "brand": "Kid's", "price": 6.5 + i,
         "categories": [["Baby", "Toys"]], "imUrl": f"http://x/{i}.jpg"}) + "\n" for i in range(6)).encode()
AMAZON2023 = "".join(json.dumps({
    "parent_asin": f"P{i}", "title": f"Stroller {i}", "store": "" if i % 2 else "Zoom",
    "features": ["Light", "Foldable"], "description": ["Great."], "categories": ["Baby", "Strollers"],
    "details": {"Brand": "Zoom", "Weight": f"{i} kg"},
    "images": [{"variant": "MAIN", "hi_res": f"http://x/{i}.jpg", "large": None}]}) + "\n" for i in range(6)).encode()
GENERIC_JSONL = "".join(json.dumps({"itemID": i, "name": f"Cup {i}", "maker": "A", "pic": f"http://x/{i}.png"}) + "\n"
                        for i in range(6)).encode()
GENERIC_CSV = ("item_id,name,maker,pic\n" + "".join(f"{i},Cup {i},A,http://x/{i}.png\n" for i in range(6))).encode()
ID_MAP = ("asin\titemID\n" + "".join(f"A{i}\t{i}\n" for i in range(6))).encode()
MAP = {f"A{i}": i for i in range(6)}
PMAP = {f"P{i}": i for i in range(6)}

TOKENS = [b"\t", b"\n", b"\r\n", b",", b'"', b"'", b"-1", b"1e400", b"nan", b"inf", b"-0", b"1.5",
          b"99999999999999999999999", b"1000000000000", b"2000000000", b"\xff", b"\x00", b"\xe9", b"\xc3",
          b"{", b"}", b"[", b"]", b"[" * 300, b"{'a': " * 50, b"null", b"true", b"\\u0000", b"\\ud800",
          b"userID", b"itemID", b"x_label", b"asin", b"parent_asin", b"itemID\titemID", b"#", b"\xef\xbb\xbf"]


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` after 1-8 edits: byte flips, inserted tokens, deletions, duplicated or dropped lines."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dupline", "dropline", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(TOKENS) | st.binary(max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 12))]
        elif op in ("dupline", "dropline"):
            lines = bytes(data).split(b"\n")
            k = draw(st.integers(0, len(lines) - 1))
            lines[k:k + 1] = [lines[k]] * (draw(st.integers(2, 40)) if op == "dupline" else 0)
            data = bytearray(b"\n".join(lines))
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


def inputs(seed: bytes):
    """Arbitrary bytes, or a mutated valid file; either optionally gzip-compressed (and maybe cut short)."""
    base = st.binary(max_size=3000) | mutated(seed)
    return st.tuples(base, st.sampled_from(["plain", "gzip", "gzip-cut"]))


def _write(name: str, data: bytes, mode: str) -> Path:
    if mode != "plain":
        data = gzip.compress(data)
        if mode == "gzip-cut":
            data = data[: max(1, len(data) * 2 // 3)]
        name += ".gz"
    path = _DIR / name
    path.write_bytes(data)
    return path


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except CliperError as exc:
        if "out of memory" in str(exc):
            raise MemoryBlowUp(str(exc)) from exc
        return exc


# ---------------------------------------------------------------- the targets
def fuzz_inter(data: bytes, mode: str = "plain"):
    return _call(load_inter, _write("d.inter", data, mode))


def fuzz_raw_csv(data: bytes, mode: str = "plain"):
    return _call(read_raw, _write("log.csv", data, mode), progress=False)


def fuzz_raw_jsonl(data: bytes, mode: str = "plain"):
    return _call(read_raw, _write("log.jsonl", data, mode), progress=False)


def fuzz_amazon2014(data: bytes, mode: str = "plain"):
    path = _write("meta_Baby.json", data, mode)
    _call(read_catalog, path, fmt="amazon2014", id_map=MAP)
    return _call(read_catalog, path, fmt="auto")


def fuzz_amazon2023(data: bytes, mode: str = "plain"):
    return _call(read_catalog, _write("meta_Baby.jsonl", data, mode), fmt="amazon2023", id_map=PMAP)


def fuzz_generic_jsonl(data: bytes, mode: str = "plain"):
    """Generic JSONL without an id map: records carry their itemID; a field map and an image column."""
    return _call(read_catalog, _write("items.jsonl", data, mode), fmt="jsonl", field_map={"title": "name"},
                 image_field="pic")


def fuzz_generic_csv(data: bytes, mode: str = "plain"):
    """Generic CSV looked up in an id map on its item_id column."""
    return _call(read_catalog, _write("items.csv", data, mode), fmt="csv", id_map={str(i): i for i in range(6)},
                 key_field="item_id", image_field="pic")


def fuzz_id_map(data: bytes, mode: str = "plain"):
    return _call(load_id_map, _write("i_id_mapping.tsv", data, "plain"))


TARGETS = {
    "inter": (fuzz_inter, INTER),
    "raw_csv": (fuzz_raw_csv, RAW_CSV),
    "raw_jsonl": (fuzz_raw_jsonl, RAW_JSONL),
    "amazon2014": (fuzz_amazon2014, AMAZON2014),
    "amazon2023": (fuzz_amazon2023, AMAZON2023),
    "generic_jsonl": (fuzz_generic_jsonl, GENERIC_JSONL),
    "generic_csv": (fuzz_generic_csv, GENERIC_CSV),
    "id_map": (fuzz_id_map, ID_MAP),
}
