"""Bundles: what a run exports, that loading verifies it, and that writing is atomic."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from cliper.serving.bundle import BundleContent, BundleError, load_bundle, verify_bundle, write_bundle


def _content(n_users=5, n_items=7, d=3, seed=0):
    rng = np.random.default_rng(seed)
    indptr = np.array([0, 1, 3, 3, 4, 6])
    return BundleContent(users=rng.standard_normal((n_users, d)).astype(np.float32),
                         items=rng.standard_normal((n_items, d)).astype(np.float32),
                         user_ids=[f"u{i}" for i in range(n_users)], item_ids=[f"i{i}" for i in range(n_items)],
                         seen_indptr=indptr, seen_indices=np.array([0, 1, 2, 6, 3, 4]),
                         metadata=[{"title": f"item {i}", "brand": None} for i in range(n_items)],
                         thumbnails=[b"\xff\xd8jpeg%d" % i if i % 2 else None for i in range(n_items)])


def test_exported_run_scores_equal_full_sort_predict_and_ids_are_raw(demo_run, demo_bundle):
    from cliper.training.runner import load_trained

    _, cat, run = demo_run
    b = load_bundle(demo_bundle)
    _, data, model = load_trained(run)
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(torch.arange(data.n_users)).numpy()
    assert np.abs(b.users @ b.items.T - scores).max() <= 1e-5
    asins = [line.split("\t")[0] for line in cat.item_mapping.read_text().splitlines()[1:]]
    assert set(b.item_ids) == set(asins) and b.item_ids[0] != "0"
    # train items per user are exactly the run's train matrix, by raw id
    tm = data.train_matrix
    for u in (0, 5, data.n_users - 1):
        assert b.seen(u).tolist() == tm.indices[tm.indptr[u]:tm.indptr[u + 1]].tolist()
    m = b.manifest
    assert m["source"]["model"] == "vbpr" and len(m["source"]["dataset"]["sha256"]) == 64
    assert len(m["source"]["feature_store"]["manifest_sha256"]) == 64
    assert m["has"] == {"metadata": True, "thumbnails": True, "clip_image": True, "clip_text": True, "encoder": True}
    enc_files = [f for f in m["files"] if f.startswith("encoder/")]
    assert "encoder/model.safetensors" in enc_files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in enc_files)
    assert b.metadata[0]["title"] and b.thumbnail(0)[:2] == b"\xff\xd8"  # a JPEG
    assert b.clip_image.shape == (data.n_items, m["encoder"]["dim"])


@pytest.mark.parametrize("model", ["bpr", "lightgcn", "mmgcn", "grcn", "dualgnn", "lattice", "slmrec", "bm3",
                                   "freedom"])
def test_every_backbone_exports_its_dot_products(demo_store, tmp_path, model):
    """VBPR is the shared demo run above; every other backbone here, one epoch on the same store."""
    from cliper.serving.export import export_run
    from cliper.training.runner import load_trained
    from serving_helpers import train_demo_run

    _, cat, store = demo_store
    _, run = train_demo_run(tmp_path, model=model, epochs=1, cat=cat, store=store)
    b = load_bundle(export_run(run, tmp_path / "b", with_encoder=False))
    _, data, m = load_trained(run)
    m.eval()
    with torch.no_grad():
        scores = m.full_sort_predict(torch.arange(data.n_users)).numpy()
    assert np.abs(b.users @ b.items.T - scores).max() <= 1e-5
    assert b.manifest["source"]["model"] == model
    assert (b.clip_image is None) == (model in ("bpr", "lightgcn"))


def test_round_trip(tmp_path):
    c = _content()
    b = load_bundle(write_bundle(c, tmp_path / "b"))
    assert np.array_equal(b.users, c.users) and np.array_equal(b.items, c.items)
    assert b.user_ids == c.user_ids and b.item_index["i3"] == 3
    assert b.seen(1).tolist() == [1, 2] and b.seen(2).tolist() == []
    assert b.thumbnail(1) == b"\xff\xd8jpeg1" and b.thumbnail(0) is None
    assert b.metadata[2] == {"title": "item 2"}  # empty fields dropped
    assert b.encoder_path is None


@pytest.mark.parametrize("tamper", ["flip_byte", "extra_file", "missing_file", "manifest_hash", "symlink"])
def test_a_bundle_that_does_not_match_its_manifest_is_refused(tmp_path, tamper):
    out = write_bundle(_content(), tmp_path / "b")
    if tamper == "flip_byte":
        p = out / "embeddings.safetensors"
        data = bytearray(p.read_bytes())
        data[-1] ^= 1
        p.write_bytes(bytes(data))
    elif tamper == "extra_file":
        (out / "pytorch_model.bin").write_bytes(b"pickle")
    elif tamper == "missing_file":
        (out / "thumbnails.bin").unlink()
    elif tamper == "manifest_hash":
        m = json.loads((out / "manifest.json").read_text())
        m["files"]["ids.json"]["sha256"] = "0" * 64
        (out / "manifest.json").write_text(json.dumps(m))
    else:
        (out / "ids.json").rename(tmp_path / "ids.json")
        (out / "ids.json").symlink_to(tmp_path / "ids.json")
    with pytest.raises(BundleError):
        load_bundle(out)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a serving bundle"):
        verify_bundle(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        verify_bundle(tmp_path / "half")


def test_writing_is_atomic_and_never_overwrites_by_accident(tmp_path):
    out = write_bundle(_content(seed=0), tmp_path / "b")
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(_content(seed=1), out)
    bad = _content()
    bad.user_ids = bad.user_ids[:-1]  # ids no longer match the embeddings: nothing may be written
    with pytest.raises(BundleError, match="id maps"):
        write_bundle(bad, tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temp folder left behind
    write_bundle(_content(seed=1), out, overwrite=True)
    assert np.array_equal(load_bundle(out).users, _content(seed=1).users)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_duplicate_or_non_finite_content_is_refused(tmp_path):
    c = _content()
    c.item_ids[1] = c.item_ids[0]
    with pytest.raises(BundleError, match="not unique"):
        write_bundle(c, tmp_path / "x")
    c = _content()
    c.items[0, 0] = np.nan
    with pytest.raises(BundleError, match="NaN"):
        write_bundle(c, tmp_path / "y")


def test_export_cli_refuses_a_folder_that_is_not_a_run(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", "from cliper.cli.main import main; main()", "export-serving", str(tmp_path), "--output",
                        str(tmp_path / "b")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    shutil.rmtree(tmp_path / "b", ignore_errors=True)


def test_serve_cli_refuses_a_damaged_bundle_in_one_line(tmp_path):
    import subprocess
    import sys

    out = write_bundle(_content(), tmp_path / "b")
    (out / "ids.json").write_text("{}")
    r = subprocess.run([sys.executable, "-c", "from cliper.cli.main import main; main()", "serve", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: bundle file ids.json does not match")
    assert len(r.stderr.strip().splitlines()) == 1
