"""The synthetic demo catalogue: determinism, on-disk formats, images and user behaviour."""

from __future__ import annotations

import hashlib
import html
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cliper.demo import generate_demo_catalog, is_synthetic_catalog
from cliper.demo import vocabulary as V
from cliper.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from content_scorer import content_scores, load, popularity_scores, recall_at_k  # noqa: E402

N_ITEMS, N_USERS = 240, 500


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return generate_demo_catalog(tmp_path_factory.mktemp("demo") / "a", N_ITEMS, N_USERS, seed=7, progress=False)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(catalog, tmp_path):
    again = generate_demo_catalog(tmp_path / "b", N_ITEMS, N_USERS, seed=7, progress=False)
    assert _digest(catalog.root) == _digest(again.root)
    other = generate_demo_catalog(tmp_path / "c", N_ITEMS, N_USERS, seed=8, progress=False)
    assert other.meta.read_bytes() != catalog.meta.read_bytes()
    assert other.inter.read_bytes() != catalog.inter.read_bytes()


def test_metadata_follows_the_amazon_2014_schema(catalog):
    rows = [json.loads(line) for line in catalog.meta.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == N_ITEMS
    keys = ["itemID", "asin", "title", "brand", "categories", "description", "price", "imUrl"]
    assert all(list(r) == keys for r in rows)
    assert [r["itemID"] for r in rows] == list(range(N_ITEMS))
    asins = [r["asin"] for r in rows]
    assert asins == sorted(asins) and len(set(asins)) == N_ITEMS  # MMRec: itemID = rank of sorted ASIN
    assert all(re.fullmatch(r"B00[0-9A-Z]{7}", a) for a in asins)
    for r in rows:
        assert isinstance(r["title"], str) and r["title"]
        assert isinstance(r["categories"], list) and all(
            isinstance(p, list) and p and all(isinstance(c, str) for c in p) for p in r["categories"]
        )
        assert r["price"] is None or isinstance(r["price"], float)
    # Realistic gaps and noise: every optional field is sometimes null, some text carries HTML.
    for key in ("brand", "description", "price", "imUrl"):
        share = np.mean([r[key] is None for r in rows])
        assert 0.0 < share < 0.5, key
    assert np.mean([r["categories"] == [["Baby"]] for r in rows]) > 0.05
    assert any("&amp;" in (r["title"] + (r["brand"] or "")) for r in rows)


def test_fields_carry_different_information(catalog):
    """Title holds the colour, brand field the brand, categories the category, description the pattern."""
    rows = [json.loads(line) for line in catalog.meta.read_text(encoding="utf-8").splitlines()]
    latent = [json.loads(line) for line in catalog.latent.read_text(encoding="utf-8").splitlines()]
    colour_in_title = np.mean([lat["colour"] in r["title"].lower() for r, lat in zip(rows, latent)])
    colour_in_desc = np.mean([lat["colour"] in (r["description"] or "").lower() for r, lat in zip(rows, latent)])
    assert colour_in_title > 0.6 and colour_in_desc < 0.1
    with_brand = [(r, lat) for r, lat in zip(rows, latent) if r["brand"]]
    assert np.mean([html.unescape(r["brand"]).lower().startswith(lat["brand"].lower()) for r, lat in with_brand]) > 0.95
    with_path = [(r, lat) for r, lat in zip(rows, latent) if len(r["categories"][0]) > 2]
    sub = {c: html.escape(V.CATEGORY_SUBPATH[c][1], quote=False) for c in V.CATEGORIES}
    assert all(r["categories"][0][1] == sub[lat["category"]] for r, lat in with_path)
    patterned = [(r, lat) for r, lat in zip(rows, latent) if r["description"] and lat["pattern"] != "plain"]
    hits = [any(w in r["description"] for w in V.PATTERN_WORDS[lat["pattern"]]) for r, lat in patterned]
    assert np.mean(hits) > 0.95


def test_inter_file_is_a_valid_mmrec_split(catalog):
    df = pd.read_csv(catalog.inter, sep="\t")
    assert list(df.columns) == ["userID", "itemID", "x_label"]
    assert set(df.x_label.unique()) == {0, 1, 2}
    assert sorted(df.userID.unique()) == list(range(N_USERS))
    assert sorted(df.itemID.unique()) == list(range(N_ITEMS))
    assert sorted(df[df.x_label == 0].itemID.unique()) == list(range(N_ITEMS))  # no item only in valid/test
    assert not df.duplicated(["userID", "itemID"]).any()
    for _, g in df.groupby("userID"):
        counts = np.bincount(g.x_label, minlength=3)
        n = len(g)
        expected = 1 if n < 10 else int(round(0.1 * n))
        assert counts[1] == expected and counts[2] == expected and counts[0] >= 1
    sizes = df.groupby("userID").size()
    assert (sizes < 10).any() and (sizes >= 10).any()  # both split rules are exercised


def test_id_mappings_match_metadata(catalog):
    imap = pd.read_csv(catalog.item_mapping, sep="\t", dtype={"asin": str})
    rows = [json.loads(line) for line in catalog.meta.read_text(encoding="utf-8").splitlines()]
    assert list(imap.columns) == ["asin", "itemID"]
    assert dict(zip(imap.asin, imap.itemID)) == {r["asin"]: r["itemID"] for r in rows}
    umap = pd.read_csv(catalog.user_mapping, sep="\t", dtype={"user_id": str})
    assert list(umap.columns) == ["user_id", "userID"]
    assert list(umap.userID) == list(range(N_USERS)) and umap.user_id.is_unique


def _dominant_colour(path: Path) -> str:
    """Nearest palette colour to the median of the non-background pixels in the picture's centre."""
    a = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    s = a.shape[0]
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    bg = np.median(border, axis=0)
    c = a[s // 5 : s - s // 5, s // 5 : s - s // 5].reshape(-1, 3)
    fg = c[np.linalg.norm(c - bg, axis=1) > 60]
    med = np.median(fg, axis=0)
    names = list(V.COLOURS)
    return names[int(np.argmin([np.linalg.norm(med - np.array(V.COLOURS[n])) for n in names]))]


def test_images_show_the_colour_named_in_the_title(catalog):
    rows = [json.loads(line) for line in catalog.meta.read_text(encoding="utf-8").splitlines()]
    latent = [json.loads(line) for line in catalog.latent.read_text(encoding="utf-8").splitlines()]
    missing = [lat for lat in latent if not lat["has_image"]]
    assert 1 <= len(missing) <= 0.05 * N_ITEMS
    for lat in latent:
        assert (catalog.images / f"{lat['asin']}.jpg").exists() == lat["has_image"]
    agree, checked = 0, 0
    for r, lat in zip(rows, latent):
        words = [c for c in V.COLOURS if re.search(rf"\b{c}\b", r["title"].lower())]
        if not lat["has_image"] or len(words) != 1:
            continue
        checked += 1
        agree += _dominant_colour(catalog.images / f"{r['asin']}.jpg") == words[0]
    with Image.open(next(catalog.images.glob("*.jpg"))) as im:
        assert im.size == (64, 64)
    assert checked > 0.5 * N_ITEMS
    assert agree / checked > 0.9


def test_content_features_predict_choices_beyond_popularity(catalog):
    meta, inter = load(catalog.root)
    content = recall_at_k(content_scores(meta, inter), inter)
    pop = recall_at_k(popularity_scores(meta, inter), inter)
    rand = recall_at_k(np.random.default_rng(0).random((N_USERS, N_ITEMS)), inter)
    assert content > 1.5 * pop
    assert content > 3.0 * rand


def test_outputs_are_labelled_synthetic(catalog):
    assert is_synthetic_catalog(catalog.meta) and is_synthetic_catalog(catalog.root)
    assert "SYNTHETIC" in catalog.synthetic_notice.read_text()
    assert "synthetic" in catalog.readme.read_text().lower()
    manifest = json.loads(catalog.manifest.read_text())
    assert manifest["synthetic"] is True and manifest["seed"] == 7
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((catalog.root / name).read_bytes()).hexdigest() == digest
    assert all(r["imUrl"] is None or ".invalid/" in r["imUrl"]
               for r in map(json.loads, catalog.meta.read_text().splitlines()))


def test_refuses_to_overwrite_and_rejects_bad_sizes(catalog, tmp_path):
    with pytest.raises(ConfigError, match="already holds"):
        generate_demo_catalog(catalog.root, N_ITEMS, N_USERS, seed=7, progress=False)
    with pytest.raises(ConfigError, match="items"):
        generate_demo_catalog(tmp_path / "x", n_items=5, progress=False)
    with pytest.raises(ConfigError, match="users"):
        generate_demo_catalog(tmp_path / "x", n_users=1, progress=False)
