"""The readers under a hard memory limit: fuzzed and hostile inputs never grow the process past it.

A child process sets ``RLIMIT_AS`` (address space) to 1.5 GiB before importing anything, runs
every fuzz target and a set of hostile inputs (ids of 2e9, 1e12 and beyond int64 in a 3,000-row
``.inter``; an id map and a catalogue with id 1e12; a catalogue line nested 100,000 deep; four
196-megapixel PNGs of ~190 KB), and reports its peak resident memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
LIMIT_MB = 1536
RSS_BOUND_MB = 600


def test_fuzzed_and_hostile_inputs_stay_under_a_fixed_memory_bound():
    src = str(HERE.parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(HERE / "bounded_fuzz.py"), str(LIMIT_MB), "40"], capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))  # figures for docs/reliability.md (pytest -s)
    assert report["maxrss_mb"] < RSS_BOUND_MB, report
    h = report["hostile"]
    for name in ("inter_id_2e9", "inter_id_1e12", "inter_id_beyond_int64"):
        assert h[name]["result"].startswith("CliperError") and h[name]["seconds"] < 1.0, (name, h[name])
    assert "not contiguous" in h["inter_id_1e12"]["result"]
    assert "out of range" in h["id_map_id_1e12"]["result"] and "out of range" in h["catalog_itemID_1e12"]["result"]
    assert h["catalog_nested_100k"]["result"] == "CatalogResult"  # the deep line is skipped, the next one read
    assert h["png_196_megapixels_x4"]["result"] == "ImageFailure(too_large)"
    assert h["png_45_megapixels"]["result"] == "ImageFailure(too_large)"
    assert h["png_6_megapixels"]["result"] == "(1000, 667)"  # reduced by 3 (ceil) before the encoder sees it
    assert report["hostile_png_bytes"] < 400_000
