"""End-to-end extraction on the real 97-item sample with a tiny CLIP saved like a hub folder."""

from __future__ import annotations

import numpy as np
import pytest
from store_helpers import CORRUPT_IMAGE_ID, EXTRA, MISSING_IMAGE_IDS, build_inputs, item_image

from cliper.catalog import read_catalog
from cliper.encoders.clip import ClipEncoder
from cliper.errors import CliperError, DataError
from cliper.features.extract import content_hash, extract_features
from cliper.features.store import FeatureStore
from cliper.views import PAPER_VIEWS, build_views

N = 100  # 97 catalogue items + 3 id-map entries absent from the catalogue


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    inputs = build_inputs(root / "in")
    result = extract_features(inputs.catalog, root / "store", inputs.clip, id_map=inputs.id_map, images=inputs.images,
                              chunk_size=32, batch_size=16, device="cpu", progress=False)
    return inputs, result, root


def test_shapes_dtypes_and_alignment(run):
    inputs, result, root = run
    s = FeatureStore.open(root / "store")
    assert (s.n_items, s.dim, s.view_names) == (N, 32, PAPER_VIEWS.names)
    assert s.views.shape == (5, N, 32) and s.views.dtype == np.float32
    assert s.image.shape == (N, 32) and s.image.dtype == np.float32
    assert s.image_mask.shape == (N,) and s.image_mask.dtype == bool
    assert s.similarity.shape == (N, 5) and s.similarity.dtype == np.float32
    np.testing.assert_array_equal(s.item_ids, np.arange(N, dtype=np.int64))
    np.testing.assert_allclose(np.linalg.norm(s.views, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(s.image, axis=-1), 1.0, atol=1e-5)
    m = s.manifest
    assert m["encoder"]["id"] == str(inputs.clip) and m["encoder"]["max_text_length"] == 77
    assert m["catalog"]["skipped_lines"] == 2 and [x["line"] for x in m["catalog"]["skipped"]] == [4, 42]
    assert m["items_missing_from_catalog"] == sorted(EXTRA.values())
    assert m["cliper_version"] and m["timings_s"]["total"] > 0


def test_rows_hold_their_own_items_text_and_image(run):
    inputs, result, root = run
    s = result.store
    enc = ClipEncoder.from_pretrained(inputs.clip, device="cpu")
    items = read_catalog(inputs.catalog, id_map=inputs.id_map).items
    for i in (0, 3, 41, 96):  # itemIDs from different chunks
        texts = build_views(items[i].fields, PAPER_VIEWS)
        np.testing.assert_allclose(s.views[:, i], enc.encode_texts(texts), atol=1e-5)
        assert [s.manifest["text_hashes"][v][i] for v in PAPER_VIEWS.names] == [content_hash(t) for t in texts]
        np.testing.assert_allclose(s.image[i], enc.encode_images([item_image(inputs, i)])[0], atol=1e-5)
        np.testing.assert_allclose(s.similarity[i], s.views[:, i] @ s.image[i], atol=1e-5)
    assert "Baby Tracker®" in build_views(items[0].fields, PAPER_VIEWS)[0]


def test_missing_corrupt_and_absent_items(run):
    inputs, result, root = run
    s, m = result.store, result.manifest
    no_image = sorted([*MISSING_IMAGE_IDS, CORRUPT_IMAGE_ID, EXTRA["ZZNOTINCAT1"], EXTRA["ZZNOTINCAT3"]])
    assert np.flatnonzero(~s.image_mask).tolist() == no_image
    reasons = {x["item_id"]: x["reason"] for x in m["images"]["missing"]}
    assert reasons[CORRUPT_IMAGE_ID] == "corrupt" and all(reasons[i] == "no_file" for i in MISSING_IMAGE_IDS)
    assert m["images"]["missing_image_rule"] == "global_text"
    g = s.view_names.index("global")
    np.testing.assert_allclose(s.image[no_image], s.views[g, no_image], atol=1e-6)  # the documented fill
    assert np.all(s.similarity[no_image] == 0.0)
    assert s.image_mask[EXTRA["ZZNOTINCAT2"]]  # absent from the catalogue, image found by its key
    missing_texts = build_views(None, PAPER_VIEWS)
    for i in EXTRA.values():
        assert [m["text_hashes"][v][i] for v in s.view_names] == [content_hash(t) for t in missing_texts]
    assert m["image_hashes"][CORRUPT_IMAGE_ID] is None and m["image_hashes"][0] is not None


def test_rerun_recomputes_nothing_and_a_change_recomputes_one_chunk(run):
    inputs, result, root = run
    assert result.work["chunks_computed"] == 4 and result.work["images_encoded"] == len(inputs.rows) - 4 + 1
    again = extract_features(inputs.catalog, root / "store", inputs.clip, id_map=inputs.id_map, images=inputs.images,
                             chunk_size=32, batch_size=16, device="cpu", progress=False)
    w = again.manifest["work"]
    assert (w["chunks_computed"], w["chunks_reused"], w["texts_encoded"], w["images_encoded"]) == (0, 4, 0, 0)
    assert w["text_forwards"] == 0 and w["image_forwards"] == 0
    np.testing.assert_array_equal(np.asarray(again.store.views), np.asarray(result.store.views))
    # one changed image (item 40, chunk 1) -> only that chunk is recomputed
    row = inputs.rows[40]
    from PIL import Image

    Image.new("RGB", (30, 30), (255, 255, 0)).save(inputs.images / f"{row['asin']}.png")
    manifest = (root / "store" / "manifest.json").read_bytes()
    # a finished store made from other images is not silently replaced ...
    with pytest.raises(CliperError, match=r"finished feature store made with other inputs: images \(items 32\.\.63\)"):
        extract_features(inputs.catalog, root / "store", inputs.clip, id_map=inputs.id_map, images=inputs.images,
                         chunk_size=32, batch_size=16, device="cpu", progress=False)
    assert (root / "store" / "manifest.json").read_bytes() == manifest
    # ... unless forced: then only the changed chunk is recomputed
    third = extract_features(inputs.catalog, root / "store", inputs.clip, id_map=inputs.id_map, images=inputs.images,
                             chunk_size=32, batch_size=16, device="cpu", progress=False, force=True)
    w = third.manifest["work"]
    assert (w["chunks_computed"], w["chunks_reused"]) == (1, 3)
    assert w["images_encoded"] == 32 and 0 < w["texts_encoded"] <= 32 * 5  # the chunk is the cache unit
    changed = np.flatnonzero(np.abs(np.asarray(third.store.image) - np.asarray(result.store.image)).max(1) > 1e-6)
    assert changed.tolist() == [40]
    assert len(list((root / "store" / "chunks").glob("chunk_*.npz"))) == 4  # the outdated chunk file is gone


def test_zeros_rule_text_only_and_unfinished_store(run, tmp_path):
    inputs, result, root = run
    z = extract_features(inputs.catalog, tmp_path / "z", inputs.clip, id_map=inputs.id_map, images=None,
                         chunk_size=64, device="cpu", progress=False, missing_image="zeros")
    assert not z.store.image_mask.any() and not np.asarray(z.store.image).any()
    assert np.all(np.asarray(z.store.similarity) == 0)
    np.testing.assert_allclose(np.asarray(z.store.views), np.asarray(result.store.views), atol=1e-6)
    (tmp_path / "z" / "manifest.json").unlink()
    with pytest.raises(DataError, match="not a finished feature extraction"):
        FeatureStore.open(tmp_path / "z")
