"""How much text the encoder saw: per-view truncation share and tokens kept, in the manifest and summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cliper.encoders.tiny import save_tiny_clip
from cliper.features.extract import extract_features
from cliper.views import ViewSet, ViewSpec

VIEWS = ViewSet((ViewSpec("title", "The product title is {title}."),
                 ViewSpec("description", "The product description is {description}."),
                 ViewSpec("global", "The product descriptions are {all}.")), name="t")
N_LONG = 3  # items 0..2 have a 300-word description; the other 7 have a 3-word one


def _catalog(root: Path) -> Path:
    rows = []
    for i in range(10):
        desc = " ".join(["a"] * 300) if i < N_LONG else "soft and warm"
        rows.append({"itemID": i, "title": f"Item {i}", "description": desc})
    path = root / "meta.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cov")
    return _catalog(root), save_tiny_clip(root / "clip", seed=0)


def _run(inputs, out, **kw):
    catalog, clip = inputs
    return extract_features(catalog, out, str(clip), views=VIEWS, images="none", device="cpu", progress=False,
                            chunk_size=4, **kw)


def test_truncation_is_reported_per_view(inputs, tmp_path):
    res = _run(inputs, tmp_path / "s")
    cov = res.manifest["text_coverage"]
    assert cov["mode"] == "truncate" and cov["window_tokens"] == 75
    v = cov["views"]
    assert v["title"]["over_limit"] == 0.0 and v["title"]["kept_fraction"] == 1.0
    # the byte-level tokenizer gives each "a" one token: 300+ tokens, of which 75 are encoded
    assert v["description"]["over_limit"] == pytest.approx(N_LONG / 10)
    assert v["description"]["cut_items"] == N_LONG
    long_kept = (v["description"]["kept_fraction"] * 10 - (10 - N_LONG)) / N_LONG
    assert 75 / 340 < long_kept < 75 / 300
    assert v["global"]["over_limit"] == pytest.approx(N_LONG / 10)
    assert "description 30% (kept" in res.summary()
    # reused chunks report the same figures without encoding anything
    again = _run(inputs, tmp_path / "s")
    assert again.manifest["work"]["chunks_computed"] == 0
    assert again.manifest["text_coverage"] == cov


def test_window_mode_keeps_every_token_of_a_text_within_16_windows(inputs, tmp_path):
    cov = _run(inputs, tmp_path / "w", long_text="window").manifest["text_coverage"]
    assert cov["mode"] == "window" and cov["max_tokens_encoded"] == 16 * 75
    assert cov["views"]["description"]["over_limit"] == pytest.approx(N_LONG / 10)
    assert cov["views"]["description"]["kept_fraction"] == 1.0


def test_an_encoder_without_token_counts_reports_unknown(inputs, tmp_path):
    from cliper.encoders.clip import ClipEncoder

    class NoCounts:  # the Encoder protocol without the optional text_coverage
        def __init__(self, enc):
            self._enc = enc
            for a in ("id", "dim", "max_text_length", "supports_images", "stats", "long_text"):
                setattr(self, a, getattr(enc, a))

        def encode_texts(self, texts, batch_size=None):
            return self._enc.encode_texts(texts, batch_size)

        def encode_images(self, images, batch_size=None):
            return self._enc.encode_images(images, batch_size)

        def fingerprint(self):
            return self._enc.fingerprint()

    catalog, clip = inputs
    enc = NoCounts(ClipEncoder.from_pretrained(str(clip), device="cpu"))
    res = extract_features(catalog, tmp_path / "u", enc, views=VIEWS, images="none", progress=False)
    assert res.manifest["text_coverage"]["views"]["description"] is None
    assert "unknown" in res.summary()
    assert np.isfinite(np.asarray(res.store.views)).all()


def test_a_chunk_written_before_coverage_is_reused_and_left_out(inputs, tmp_path):
    out = tmp_path / "old"
    _run(inputs, out)
    first = sorted((out / "chunks").glob("chunk_000000_*.npz"))[0]
    with np.load(first, allow_pickle=False) as z:
        old = {k: z[k] for k in z.files if k != "tokens"}
    np.savez(first, **old)  # the chunk format of earlier versions
    res = _run(inputs, out)
    assert res.manifest["work"]["chunks_computed"] == 0  # not re-encoded for the report's sake
    assert res.manifest["text_coverage"]["views"]["description"]["items"] == 10 - 4  # chunk 0 (4 items) unknown
