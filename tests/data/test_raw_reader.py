"""Raw log readers: column mapping, formats, and errors that name file and line."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from cliper.data.raw import ColumnMap, infer_format, read_raw
from cliper.errors import ConfigError, DataError


def _write_jsonl(path, records, gz=False):
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")


def test_formats_agree(tmp_path, raw_frame):
    raw_frame.to_csv(tmp_path / "r.csv", index=False)
    raw_frame.to_csv(tmp_path / "r.tsv", index=False, sep="\t")
    _write_jsonl(tmp_path / "r.jsonl.gz", raw_frame.to_dict("records"), gz=True)
    raw_frame.to_parquet(tmp_path / "r.parquet")
    frames = [read_raw(tmp_path / f, progress=False) for f in ("r.csv", "r.tsv", "r.jsonl.gz", "r.parquet")]
    for r in frames:
        assert r.columns == ColumnMap("reviewerID", "asin", "unixReviewTime", "overall")
        assert r.frame["user"].tolist() == raw_frame["reviewerID"].tolist()
        assert r.frame["item"].tolist() == raw_frame["asin"].tolist()
        assert r.frame["timestamp"].tolist() == raw_frame["unixReviewTime"].tolist()
        assert r.frame["rating"].tolist() == raw_frame["overall"].tolist()
    assert frames[0].frame["line"].tolist()[:2] == [2, 3]  # CSV: header is line 1
    assert frames[2].frame["line"].tolist()[:2] == [1, 2]  # JSONL: one record per line


def test_explicit_columns_and_rating_filter(tmp_path):
    (tmp_path / "r.csv").write_text("who,what,stars\na,x,5\nb,y,2\nc,z,4\n")
    r = read_raw(tmp_path / "r.csv", columns=ColumnMap(user="who", item="what", rating="stars"), min_rating=4)
    assert r.frame["user"].tolist() == ["a", "c"]
    assert r.rows_read == 3 and r.rows_below_rating == 1
    assert not r.has_timestamp


def test_iso_dates_become_unix_seconds(tmp_path):
    (tmp_path / "r.csv").write_text("user,item,time\na,x,1970-01-02\nb,y,2014-01-01T00:00:00Z\n")
    r = read_raw(tmp_path / "r.csv")
    assert r.frame["timestamp"].tolist() == [86400, 1388534400]


def test_missing_column_names_header_line(tmp_path):
    (tmp_path / "r.csv").write_text("u,item\na,x\n")
    with pytest.raises(DataError, match=r"r\.csv:1: no user column.*columns are: u, item"):
        read_raw(tmp_path / "r.csv")
    with pytest.raises(DataError, match=r"r\.csv:1: item column 'sku' not found"):
        read_raw(tmp_path / "r.csv", columns=ColumnMap(user="u", item="sku"))


def test_bad_timestamp_names_line_even_after_blank_line(tmp_path):
    (tmp_path / "r.csv").write_text("user,item,timestamp\na,x,100\n\nb,y,12x\n")
    with pytest.raises(DataError, match=r"r\.csv:4: bad timestamp '12x'") as err:
        read_raw(tmp_path / "r.csv")
    assert err.value.line == 4


def test_missing_timestamp_and_empty_id(tmp_path):
    (tmp_path / "r.csv").write_text("user,item,timestamp\na,x,100\nb,y,\n")
    with pytest.raises(DataError, match=r"r\.csv:3: missing timestamp"):
        read_raw(tmp_path / "r.csv")
    (tmp_path / "s.csv").write_text("user,item\na,x\nb, \n")
    with pytest.raises(DataError, match=r"s\.csv:3: empty item id"):
        read_raw(tmp_path / "s.csv")


def test_jsonl_errors_name_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"user": "a", "item": "x"}\n\n{"user": "b", "item": \n')
    with pytest.raises(DataError, match=r"r\.jsonl:3: invalid JSON"):
        read_raw(p, progress=False)
    p.write_text('{"user": "a", "item": "x"}\n{"user": "b"}\n')
    with pytest.raises(DataError, match=r"r\.jsonl:2: missing field 'item'"):
        read_raw(p, progress=False)
    p.write_text('{"user": "a", "item": "x"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"r\.jsonl:2: expected one JSON object"):
        read_raw(p, progress=False)


def test_parquet_errors_name_row(tmp_path):
    pd.DataFrame({"user": ["a", None], "item": ["x", "y"]}).to_parquet(tmp_path / "r.parquet")
    with pytest.raises(DataError, match=r"r\.parquet: row 2: empty user id"):
        read_raw(tmp_path / "r.parquet")
    pd.DataFrame({"user": [1, 2], "item": [10.0, 11.0]}).to_parquet(tmp_path / "n.parquet")
    r = read_raw(tmp_path / "n.parquet")
    assert r.frame["item"].tolist() == ["10", "11"]  # integral floats lose the '.0'


def test_empty_after_rating_filter_and_rating_required(tmp_path):
    (tmp_path / "r.csv").write_text("user,item,rating\na,x,1\nb,y,2\n")
    with pytest.raises(DataError, match="no interactions left after keeping ratings >= 4"):
        read_raw(tmp_path / "r.csv", min_rating=4)
    (tmp_path / "s.csv").write_text("user,item\na,x\n")
    with pytest.raises(DataError, match="needs a rating column"):
        read_raw(tmp_path / "s.csv", min_rating=4)
    (tmp_path / "t.csv").write_text("user,item,rating\na,x,good\n")
    with pytest.raises(DataError, match=r"t\.csv:2: bad rating 'good'"):
        read_raw(tmp_path / "t.csv")


def test_format_inference(tmp_path):
    assert infer_format("a/reviews_Baby_5.json.gz") == "jsonl"
    assert infer_format("x.TSV") == "csv"
    assert infer_format("x.pq") == "parquet"
    with pytest.raises(ConfigError, match="--format"):
        infer_format("x.bin")
    with pytest.raises(DataError, match="not found"):
        read_raw(tmp_path / "nope.csv")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_raw(tmp_path / "e.csv")
