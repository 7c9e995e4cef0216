"""The extraction stages on their own: threaded image decoding changes nothing but the speed."""

from __future__ import annotations

import numpy as np
from store_helpers import build_inputs, item_image

from cliper.catalog import read_catalog
from cliper.encoders.clip import ClipEncoder
from cliper.features.extract import encode_chunk
from cliper.images import make_image_source
from cliper.views import PAPER_VIEWS, build_views


def test_threaded_image_decoding_gives_the_same_embeddings(tmp_path):
    """encode_chunk with image_threads > 1 (what --cpus-per-worker gives a Ray actor) = one thread."""
    inputs = build_inputs(tmp_path / "in")
    enc = ClipEncoder.from_pretrained(inputs.clip, device="cpu")
    items = read_catalog(inputs.catalog, id_map=inputs.id_map).items
    ids = list(range(12))  # includes the corrupt image (5) and a missing one (10)
    source = make_image_source(inputs.images)
    fetched = [source.fetch(i, items[i].key, items[i].image_urls) for i in ids]
    texts = [build_views(items[i].fields, PAPER_VIEWS) for i in ids]
    out = {}
    for threads in (1, 3):
        work = dict(texts_encoded=0, images_encoded=0)
        out[threads] = encode_chunk(enc, texts, fetched, {}, 4, "global_text", 4, work, image_threads=threads)
        assert work["images_encoded"] == 10
    np.testing.assert_array_equal(out[1]["mask"], out[3]["mask"])
    assert out[1]["reasons"].tolist() == out[3]["reasons"].tolist()
    assert (out[3]["reasons"][5], out[3]["reasons"][10]) == ("corrupt", "no_file")
    np.testing.assert_allclose(out[1]["image"], out[3]["image"], atol=1e-6, rtol=0)
    for j in (0, 7, 11):  # and each row is that item's own image
        np.testing.assert_allclose(out[3]["image"][j], enc.encode_images([item_image(inputs, ids[j])])[0], atol=1e-5)
