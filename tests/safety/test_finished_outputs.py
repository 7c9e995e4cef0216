"""Nothing finished is silently replaced: `data build -o` and `extract --output` into a folder holding a
finished result made with other inputs or options refuse, saying what differs; `--force` replaces it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safety_helpers import run_cli

from cliper.data.build import build_dataset
from cliper.errors import CliperError


@pytest.fixture
def raw(tmp_path):
    path = tmp_path / "raw.csv"
    path.write_text("user,item\n" + "".join(f"u{u},i{(u * 7 + k) % 11}\n" for u in range(30) for k in range(5)))
    return path


def test_data_build_refuses_other_options_and_force_replaces(raw, tmp_path):
    out = tmp_path / "ds"
    first = build_dataset(raw, out, k_core=2, seed=1, progress=False)
    inter = first.inter.read_bytes()
    again = build_dataset(raw, out, k_core=2, seed=1, progress=False)  # the same build: allowed, identical
    assert again.inter.read_bytes() == inter
    with pytest.raises(CliperError, match=r"holds a finished dataset made with other inputs: k_core \(2 -> 3\); "
                                          r"seed \(1 -> 5\)") as err:
        build_dataset(raw, out, k_core=3, seed=5, progress=False)
    assert "--force" in str(err.value)
    assert first.inter.read_bytes() == inter  # untouched
    replaced = build_dataset(raw, out, k_core=3, seed=5, progress=False, force=True)
    assert json.loads(replaced.summary_path.read_text())["inputs"]["seed"] == 5
    assert replaced.inter.read_bytes() != inter


def test_data_build_refuses_another_raw_file_via_the_cli(raw, tmp_path):
    out = tmp_path / "ds"
    build_dataset(raw, out, k_core=1, progress=False)
    other = tmp_path / "raw.csv"
    other.write_text(raw.read_text() + "u99,i1\n")  # same path, other content
    res = run_cli("data", "build", str(other), "-o", str(out), "--k-core", "1")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {out} holds a finished dataset made with other inputs: the raw file's content (sha256). "
        "Choose another --output, or pass --force to replace it"]
    forced = run_cli("data", "build", str(other), "-o", str(out), "--k-core", "1", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "u99" in (out / "u_id_mapping.tsv").read_text()


def test_data_build_refuses_a_folder_with_a_foreign_dataset(raw, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "baby.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n")
    with pytest.raises(CliperError, match="baby.inter not written by `cliper data build`"):
        build_dataset(raw, out, k_core=1, progress=False)
    res = build_dataset(raw, out, k_core=1, progress=False, force=True)
    assert sorted(p.name for p in out.glob("*.inter")) == [res.inter.name]  # the folder holds one dataset


def _extract(demo, out, **kw):
    from cliper.features.extract import extract_features

    cat, clip = demo
    return extract_features(cat.meta, out, kw.pop("clip", clip), id_map=cat.item_mapping, images=cat.images,
                            device="cpu", chunk_size=32, progress=False, **kw)


def test_extract_refuses_other_settings_and_force_replaces(demo, tmp_path):
    from cliper.encoders.tiny import save_tiny_clip

    out = tmp_path / "store"
    first = _extract(demo, out)
    views = np.array(first.store.views)
    again = _extract(demo, out)  # the same inputs: resumes, recomputes nothing
    assert again.work["chunks_computed"] == 0
    manifest = (out / "manifest.json").read_bytes()
    with pytest.raises(CliperError, match=r"finished feature store made with other inputs: missing-image rule "
                                          r"\(global_text -> zeros\)"):
        _extract(demo, out, missing_image="zeros")
    other_clip = save_tiny_clip(tmp_path / "clip2", seed=1)
    with pytest.raises(CliperError, match=r"other inputs: encoder \(clip\|"):
        _extract(demo, out, clip=other_clip)
    with pytest.raises(CliperError, match=r"other inputs: views \("):
        _extract(demo, out, views="mmrec-text")
    assert (out / "manifest.json").read_bytes() == manifest  # every refusal left the store as it was
    np.testing.assert_array_equal(np.asarray(_extract(demo, out).store.views), views)
    forced = _extract(demo, out, clip=other_clip, force=True)
    assert forced.work["chunks_computed"] == forced.work["chunks"]
    assert not np.array_equal(np.asarray(forced.store.views), views)


def test_extract_refuses_changed_item_texts_via_the_cli(demo, tmp_path):
    cat, clip = demo
    out = tmp_path / "store"
    _extract(demo, out)
    meta = tmp_path / "meta.jsonl"
    lines = cat.meta.read_text().splitlines()
    row = json.loads(lines[3])
    row["title"] = "a completely different title"
    meta.write_text("\n".join(lines[:3] + [json.dumps(row)] + lines[4:]) + "\n")
    args = ["extract", "--catalog", str(meta), "--output", str(out), "--encoder", str(clip), "--id-map",
            str(cat.item_mapping), "--images", str(cat.images), "--device", "cpu", "--chunk-size", "32", "-q"]
    res = run_cli(*args)
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()[-1]  # (above it: transformers' weight-loading bar)
    assert "Traceback" not in res.stderr and res.stderr.count("error:") == 1
    assert line.startswith(f"error: {out} holds a finished feature store made with other inputs: item texts (1 items")
    assert run_cli(*args, "--force").returncode == 0
