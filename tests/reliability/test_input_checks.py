"""The checks behind the one-line errors, at the function level: what is rejected, warned, bounded."""

from __future__ import annotations

import errno
import gzip
import io
import json
import logging
import time

import numpy as np
import pytest
from bad_input_cases import valid_inter_text
from PIL import Image

from cliper.atomic import atomic_write_text
from cliper.catalog import load_id_map, read_catalog
from cliper.data.interactions import load_inter
from cliper.encoders.base import MAX_TEXT_WINDOWS, token_windows
from cliper.errors import DataError, explain, reading, writing
from cliper.features.store import FeatureStore, find_non_finite
from cliper.images.load import MAX_PIXELS, WORKING_SIDE, decode_image


def test_inter_without_train_rows_is_an_error(tmp_path):
    p = tmp_path / "d.inter"
    p.write_text("userID\titemID\tx_label\n0\t0\t1\n0\t1\t2\n")
    with pytest.raises(DataError, match="no train interactions"):
        load_inter(p)


@pytest.mark.parametrize("big", ["2000000000", "1000000000000", "1e12", "99999999999999999999999"])
def test_huge_ids_fail_fast_without_allocating(tmp_path, big):
    p = tmp_path / "d.inter"
    p.write_text(valid_inter_text(500, 50) + f"3\t{big}\t0\n")
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="not contiguous|out of range") as err:
        load_inter(p)
    assert time.perf_counter() - t0 < 1.0
    assert str(p) in str(err.value)


def test_huge_user_id_and_n_items_bound(tmp_path):
    p = tmp_path / "d.inter"
    p.write_text(valid_inter_text(30, 12) + "1000000000000\t1\t0\n")
    with pytest.raises(DataError, match=r"user ids are not contiguous.*largest: 1000000000000 on line 182"):
        load_inter(p)
    p.write_text(valid_inter_text(30, 12) + "3\t500\t0\n")
    with pytest.raises(DataError, match=r"d\.inter:182: item id 500 is out of range for n_items=20"):
        load_inter(p, n_items=20)


def test_gzip_inter_truncated_names_the_file(tmp_path):
    p = tmp_path / "d.inter.gz"
    data = gzip.compress(valid_inter_text(300, 40).encode())
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"d\.inter\.gz: cannot read: compressed file is truncated"):
        load_inter(p)
    p.write_bytes(gzip.compress(valid_inter_text().encode()))
    assert load_inter(p).n_users == 30  # an intact .inter.gz reads


def test_id_map_zero_match_is_an_error_and_low_coverage_warns(tmp_path, caplog):
    cat = tmp_path / "meta.jsonl"
    cat.write_text("".join(json.dumps({"asin": f"A{i}", "title": "t"}) + "\n" for i in range(3)))
    with pytest.raises(DataError, match=r"none of the 3 catalogue records matches the id map"):
        read_catalog(cat, fmt="amazon2014", id_map={"X0": 0, "X1": 1})
    with caplog.at_level(logging.WARNING, logger="cliper.catalog.reader"):
        res = read_catalog(cat, fmt="amazon2014", id_map={f"A{i}": i for i in range(10)})
    assert len(res.items) == 3
    assert any("only 3 of 10 items (30.0%)" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cliper.catalog.reader"):
        read_catalog(cat, fmt="amazon2014", id_map={f"A{i}": i for i in range(4)})
    assert not [r for r in caplog.records if "found in the catalogue" in r.getMessage()]


def test_id_map_header_duplicates_and_range(tmp_path):
    p = tmp_path / "m.tsv"
    p.write_text("097293751X\t0\n9729375011\t1\n")
    with pytest.raises(DataError, match=r"m\.tsv:1: no header row"):
        load_id_map(p)
    p.write_text("sku\tidx\nA\t0\nB\t1\n")  # unknown names, two columns: still a header
    assert load_id_map(p) == {"A": 0, "B": 1}
    p.write_text("asin\titemID\nA\t0\nB\t0\n")
    with pytest.raises(DataError, match=r"m\.tsv:3: item id 0 is given to two keys, 'A' \(line 2\) and 'B'"):
        load_id_map(p)
    p.write_text("asin\titemID\nA\t0\nB\t7\n")
    with pytest.raises(DataError, match=r"m\.tsv:3: item id 7 is out of range"):
        load_id_map(p)


def test_catalogue_itemid_far_beyond_its_records_is_an_error(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"itemID": 0, "t": 1}\n{"itemID": 5000000, "t": 2}\n')
    with pytest.raises(DataError, match=r"c\.jsonl:2: itemID 5000000 is out of range"):
        read_catalog(p, fmt="jsonl")
    p.write_text('{"itemID": 0, "t": 1}\n{"itemID": 40, "t": 2}\n')  # a sample of a larger dataset: fine
    assert sorted(read_catalog(p, fmt="jsonl").items) == [0, 40]


def test_non_finite_store_values_are_located(tmp_path):
    from bad_input_cases import _store

    store = _store(tmp_path / "s", nan_at=(0, 4, 3))
    with pytest.raises(DataError, match=r"views\.npy: view 'title' \(index 0\) holds nan at item row 4, column 3"):
        FeatureStore.open(store)
    a = np.zeros((70_000, 3), np.float32)  # spans two scan blocks
    a[69_999, 2] = -np.inf
    assert find_non_finite(a, block=1 << 16) == ((69_999, 2), float("-inf"))
    assert find_non_finite(np.ones((5, 2), np.float32)) is None


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, "PNG")
    return buf.getvalue()


def test_images_over_the_pixel_cap_are_refused_before_decoding():
    side = int(MAX_PIXELS**0.5) + 10
    out = decode_image(_png(side, side))
    assert out.reason == "too_large" and "limit" in out.detail
    small = decode_image(_png(300, 200))
    assert small.size == (300, 200) and small.mode == "RGB"  # ordinary images untouched


def test_large_images_are_reduced_and_jpeg_drafted():
    big = decode_image(_png(3 * WORKING_SIDE, 2 * WORKING_SIDE + 5))
    assert big.size == (3 * WORKING_SIDE // 2, WORKING_SIDE + 3)  # reduced by 2
    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), (9, 9, 9)).save(buf, "JPEG")
    im = decode_image(buf.getvalue())
    assert min(im.size) >= WORKING_SIDE // 2 and im.size[0] <= 1000  # decoded at 1/4 scale by draft()


def test_window_mode_keeps_at_most_the_cap():
    ids = list(range(75 * (MAX_TEXT_WINDOWS + 30)))
    wins = token_windows(ids, 75, "window")
    assert len(wins) == MAX_TEXT_WINDOWS and wins[-1][-1] == 75 * MAX_TEXT_WINDOWS - 1
    assert len(token_windows(ids[:150], 75, "window")) == 2


def test_atomic_write_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("cliper.atomic.os.replace", full)
    with pytest.raises(DataError, match=r"out\.txt: cannot write: no space left on device"):
        atomic_write_text(target, "new")
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"] and target.read_text() == "old"


def test_explain_and_reading_give_one_line():
    with pytest.raises(DataError, match=r"^x\.csv: cannot read: permission denied$"):
        with reading("x.csv"):
            raise PermissionError(errno.EACCES, "Permission denied", "x.csv")
    with pytest.raises(DataError, match=r"^o/: cannot write: read-only file system$"):
        with writing("o/"):
            raise OSError(errno.EROFS, "Read-only file system")
    assert explain(OSError(errno.ENOSPC, "x", "/a/b")) == "/a/b: no space left on device (the disk is full)"
    assert explain(EOFError("Compressed file ended")).startswith("compressed file is truncated")
    assert "\n" not in explain(ValueError("two\nlines"))


def test_raw_timestamp_beyond_int64_precision_is_an_error(tmp_path):
    from cliper.data.raw import read_raw

    p = tmp_path / "log.csv"
    p.write_text("user_id,item_id,timestamp\nA,x,1600000000\nB,y,1e300\n")
    with pytest.raises(DataError, match=r"log\.csv:3: bad timestamp '1e300'"):
        read_raw(p, progress=False)


def test_bad_cliper_threads_env_is_a_config_error(monkeypatch):
    from cliper.errors import ConfigError
    from cliper.runtime import set_threads

    monkeypatch.setenv("CLIPER_THREADS", "two")
    with pytest.raises(ConfigError, match="CLIPER_THREADS must be a positive integer, got 'two'"):
        set_threads(None)


def test_real_sample_against_the_full_id_map(baby_dir, caplog):
    """The 97-item real sample covers 1.4% of Baby's 7,050 items: a warning; the wrong key field: an error."""
    sample, id_map = baby_dir / "meta_sample.jsonl", baby_dir / "i_id_mapping.tsv"
    if not sample.is_file():
        pytest.skip("meta_sample.jsonl not in the shared data")
    mapping = load_id_map(id_map)
    assert len(mapping) == max(mapping.values()) + 1  # the real map passes the contiguity check
    with caplog.at_level(logging.WARNING, logger="cliper.catalog.reader"):
        res = read_catalog(sample, id_map=id_map)
    assert len(res.items) == 97
    assert any(f"only 97 of {len(mapping)} items" in r.getMessage() for r in caplog.records)
    with pytest.raises(DataError, match="none of the 97 catalogue records matches the id map"):
        read_catalog(sample, id_map=id_map, key_field="title")


def test_local_image_file_over_the_byte_cap_is_not_read(tmp_path):
    from cliper.images import LocalImageSource
    from cliper.images.load import MAX_IMAGE_BYTES

    with open(tmp_path / "7.png", "wb") as fh:  # sparse: costs no disk
        fh.truncate(MAX_IMAGE_BYTES + 1)
    got = LocalImageSource(tmp_path).fetch(7, "", [])
    assert got.reason == "too_large" and str(MAX_IMAGE_BYTES) in got.detail


def test_python_literal_catalogue_lines_with_odd_escapes_do_not_warn(tmp_path, recwarn):
    p = tmp_path / "meta.json"
    p.write_text("{'asin': 'A0', 'title': 'a \\\\: b \\\\d'}\n".replace("\\\\", "\\"))
    res = read_catalog(p, fmt="amazon2014", id_map={"A0": 0})
    assert res.items[0].fields["title"] == "a \\: b \\d"
    assert not [w for w in recwarn if issubclass(w.category, (DeprecationWarning, SyntaxWarning))]
