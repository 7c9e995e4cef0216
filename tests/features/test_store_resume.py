"""Resumability: a run killed with SIGKILL mid-way resumes without recomputing finished chunks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from store_helpers import build_inputs, item_image

from cliper.catalog import read_catalog
from cliper.encoders.clip import ClipEncoder
from cliper.features.extract import extract_features
from cliper.views import PAPER_VIEWS, build_views

CHILD = textwrap.dedent(
    """
    import sys, time
    from cliper.features.extract import extract_features
    catalog, id_map, images, clip, out = sys.argv[1:6]
    def slow(index, total, computed):
        print(f"chunk {index} done", flush=True)
        time.sleep(0.6)   # give the parent time to kill us between (and during) chunks
    extract_features(catalog, out, clip, id_map=id_map, images=images, chunk_size=20, batch_size=64,
                     device="cpu", progress=False, on_chunk=slow)
    print("finished", flush=True)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_then_resume(tmp_path):
    inputs = build_inputs(tmp_path / "in")
    out = tmp_path / "store"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    errf = (tmp_path / "child.err").open("w")
    proc = subprocess.Popen([sys.executable, str(script), str(inputs.catalog), str(inputs.id_map), str(inputs.images),
                             str(inputs.clip), str(out)], stdout=subprocess.PIPE, stderr=errf, text=True)
    try:
        done = 0
        deadline = time.time() + 240
        while done < 2 and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            done += line.startswith("chunk ")
        assert done >= 2, "child did not finish two chunks: " + (tmp_path / "child.err").read_text()[-2000:]
        time.sleep(0.9)  # past the child's 0.6 s pause: it is now inside chunk 2 (encoding or writing)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
        errf.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    finished = sorted((out / "chunks").glob("chunk_*.npz"))
    assert 2 <= len(finished) < 5
    for f in finished:  # every visible chunk file is complete
        with np.load(f) as z:
            assert z["views"].shape == (5, 20, 32)

    resumed = extract_features(inputs.catalog, out, inputs.clip, id_map=inputs.id_map, images=inputs.images,
                               chunk_size=20, batch_size=64, device="cpu", progress=False)
    w = resumed.manifest["work"]
    assert w["chunks_reused"] == len(finished) and w["chunks_computed"] == 5 - len(finished)
    assert not list(out.rglob("*.tmp"))

    # rows from reused and recomputed chunks both match a direct encoding of the item
    enc = ClipEncoder.from_pretrained(inputs.clip, device="cpu")
    items = read_catalog(inputs.catalog, id_map=inputs.id_map).items
    s = resumed.store
    for i in (0, 15, 55, 96):
        np.testing.assert_allclose(s.views[:, i], enc.encode_texts(build_views(items[i].fields, PAPER_VIEWS)), atol=1e-5)
        np.testing.assert_allclose(s.image[i], enc.encode_images([item_image(inputs, i)])[0], atol=1e-5)
    assert s.image_mask.sum() == 94
