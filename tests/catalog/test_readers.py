"""Catalogue readers: Amazon 2014/2023 schemas, generic files, id maps, malformed lines."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cliper.catalog import load_id_map, read_catalog
from cliper.catalog.reader import detect_format, parse_field_map
from cliper.errors import ConfigError, DataError
from cliper.paths import shared_dataset


@pytest.fixture
def sample() -> Path:
    d = shared_dataset("amazon-baby")
    if d is None or not (d / "meta_sample.jsonl").is_file():
        pytest.skip("shared Amazon Baby sample not present")
    return d / "meta_sample.jsonl"


def test_real_sample_with_shared_id_map(sample):
    res = read_catalog(sample, id_map=sample.parent / "i_id_mapping.tsv")
    rows = [json.loads(line) for line in sample.read_text().splitlines()]
    assert res.fmt == "amazon2014"
    assert sorted(res.items) == sorted(r["itemID"] for r in rows)
    assert res.n_skipped == 0 and res.unmapped == 0
    for r in rows[:20]:
        item = res.items[r["itemID"]]
        assert item.key == r["asin"]
        assert item.fields["title"] == r["title"] and item.fields["brand"] == r["brand"]
        assert item.fields["categories"] == r["categories"]
        assert item.image_urls == ([r["imUrl"]] if r["imUrl"] else [])


def test_malformed_lines_are_skipped_with_line_numbers(sample, tmp_path, caplog):
    lines = sample.read_text().splitlines()
    bad = lines[:10] + ["{not json at all"] + lines[10:50] + ['["a list", "not an object"]', ""] + lines[50:]
    p = tmp_path / "meta.jsonl"
    p.write_text("\n".join(bad) + "\n")
    res = read_catalog(p)
    assert len(res.items) == len(lines)  # nothing else lost
    assert [s.line for s in res.skipped] == [11, 52]
    assert "11" in caplog.text and "52" in caplog.text


def test_python_literal_lines_parse_safely_never_eval(tmp_path):
    marker = tmp_path / "pwned"
    lines = [
        "{'asin': 'A1', 'title': 'Soft Beads', 'categories': [['Baby', 'Toys']], 'price': 6.5}",
        f"__import__('pathlib').Path({str(marker)!r}).write_text('x')",
        "{'asin': 'A2', 'title': \"Kid's cup\", 'imUrl': 'http://x/y.jpg'}",
    ]
    p = tmp_path / "meta_Baby.json.gz"
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    res = read_catalog(p, fmt="amazon2014", id_map={"A1": 0, "A2": 1})
    assert not marker.exists()
    assert [s.line for s in res.skipped] == [2]
    assert res.items[0].fields["categories"] == [["Baby", "Toys"]]
    assert res.items[1].fields["title"] == "Kid's cup" and res.items[1].image_urls == ["http://x/y.jpg"]
    assert detect_format(p) == "amazon2014"


def test_amazon2023_schema(tmp_path):
    rec = {
        "parent_asin": "P9", "title": "Stroller", "store": "", "features": ["Light", "Foldable"],
        "description": ["Great for walks."], "categories": ["Baby Products", "Strollers"],
        "details": {"Brand": "Zoom", "Weight": "5 kg"},
        "images": [{"variant": "PT01", "large": "http://x/side.jpg"}, {"variant": "MAIN", "hi_res": "http://x/main.jpg", "large": "http://x/main_l.jpg"}],
    }
    p = tmp_path / "meta_Baby_Products.jsonl"
    p.write_text(json.dumps(rec) + "\n" + json.dumps({**rec, "parent_asin": "P0"}) + "\n")
    res = read_catalog(p, id_map={"P9": 3})
    assert res.fmt == "amazon2023" and res.unmapped == 1
    item = res.items[3]
    assert item.fields["brand"] == "Zoom"  # empty store falls back to details['Brand']
    assert item.fields["features"] == ["Light", "Foldable"]
    assert item.image_urls[0] == "http://x/main.jpg"


def test_generic_csv_jsonl_parquet_with_field_map(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"sku": ["s1", "s2", "s3"], "name": ["Cup", "Bowl", None], "maker": ["A", None, "C"], "pic": ["http://x/1.png", "", None]})
    id_map = {"s1": 0, "s2": 1, "s3": 2}
    fmap = parse_field_map("title=name, brand=maker")
    for fmt, path in (("csv", tmp_path / "c.csv"), ("jsonl", tmp_path / "c.jsonl"), ("parquet", tmp_path / "c.parquet")):
        if fmt == "csv":
            df.to_csv(path, index=False)
        elif fmt == "jsonl":
            df.to_json(path, orient="records", lines=True)
        else:
            df.to_parquet(path)
        res = read_catalog(path, fmt="auto", id_map=id_map, key_field="sku", field_map=fmap, image_field="pic")
        assert res.fmt == fmt
        assert res.items[0].fields == {"title": "Cup", "brand": "A"}
        assert res.items[1].fields["brand"] is None
        assert res.items[2].fields["title"] is None
        assert res.items[0].image_urls == ["http://x/1.png"] and res.items[1].image_urls == []


def test_csv_row_with_wrong_width_is_skipped(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("asin,title\nA,Cup\nB\nC,Bowl\n")
    res = read_catalog(p, id_map={"A": 0, "B": 1, "C": 2})
    assert sorted(res.items) == [0, 2] and [s.line for s in res.skipped] == [3]


def test_duplicates_keep_first_and_missing_id_is_reported(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"asin": "A", "title": "first"}\n{"asin": "A", "title": "second"}\n{"title": "no key"}\n')
    res = read_catalog(p, fmt="amazon2014", id_map={"A": 0})
    assert res.items[0].fields["title"] == "first" and res.duplicates == 1
    assert res.skipped[0].line == 3 and "asin" in res.skipped[0].reason
    res2 = read_catalog(p, fmt="amazon2014")  # no id map and no itemID: every line is malformed
    assert res2.items == {} and res2.n_skipped == 3


def test_id_map_errors_name_file_and_line(tmp_path):
    good = tmp_path / "map.tsv"
    good.write_text("asin\titemID\nA\t0\nB\t1\n")
    assert load_id_map(good) == {"A": 0, "B": 1}
    bad = tmp_path / "bad.tsv"
    bad.write_text("asin\titemID\nA\t0\nB\tx\n")
    with pytest.raises(DataError, match=r"bad.tsv:3: item id 'x'"):
        load_id_map(bad)
    clash = tmp_path / "clash.csv"
    clash.write_text("asin,itemID\nA,0\nA,1\n")
    with pytest.raises(DataError, match="clash.csv:3"):
        load_id_map(clash)
    with pytest.raises(DataError, match="not found"):
        read_catalog(tmp_path / "nope.jsonl")
    with pytest.raises(ConfigError):
        read_catalog(good, fmt="xml")
