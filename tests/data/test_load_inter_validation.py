"""The .inter reader's validation: errors name the file and the exact line."""

from __future__ import annotations

import logging

import pytest

from cliper.data.interactions import load_inter
from cliper.errors import DataError

HEADER = "userID\titemID\tx_label\n"


def _write(tmp_path, body, name="d.inter"):
    p = tmp_path / name
    p.write_text(HEADER + body)
    return p


def test_non_integer_id_names_line(tmp_path):
    p = _write(tmp_path, "0\t0\t0\n0\t1\t0\n1\tab\t0\n")
    with pytest.raises(DataError, match=r"d\.inter:4: column 'itemID' must hold non-negative integers, got 'ab'"):
        load_inter(p)
    p = _write(tmp_path, "0\t0\t0\n-1\t1\t0\n")
    with pytest.raises(DataError, match=r"d\.inter:3: column 'userID'"):
        load_inter(p)
    p = _write(tmp_path, "0\t0\t0\n0\tinf\t0\n")
    with pytest.raises(DataError, match=r"d\.inter:3: column 'itemID'"):
        load_inter(p)


def test_label_out_of_range(tmp_path):
    p = _write(tmp_path, "0\t0\t0\n0\t1\t2\n1\t1\t3\n")
    with pytest.raises(DataError, match=r"d\.inter:4: x_label must be 0, 1 or 2.*got 3") as err:
        load_inter(p)
    assert err.value.line == 4 and err.value.path == p


def test_duplicate_pair_names_both_lines(tmp_path):
    p = _write(tmp_path, "0\t0\t0\n1\t1\t0\n0\t1\t1\n1\t0\t0\n0\t1\t2\n")
    with pytest.raises(DataError, match=r"d\.inter:6: duplicate pair user 0 item 1 \(also on line 4\)"):
        load_inter(p)


def test_line_numbers_survive_blank_lines(tmp_path):
    p = _write(tmp_path, "0\t0\t0\n\n0\t1\tx\n")
    with pytest.raises(DataError, match=r"d\.inter:4: column 'x_label'"):
        load_inter(p)


def test_non_contiguous_item_ids(tmp_path):
    p = _write(tmp_path, "0\t0\t0\n0\t2\t0\n1\t3\t0\n")
    with pytest.raises(DataError, match=r"d\.inter: item ids are not contiguous.*first: 1"):
        load_inter(p)
    # with n_items given, unused catalogue items are allowed
    assert load_inter(p, n_items=5).n_items == 5


def test_missing_header_column_and_empty(tmp_path):
    p = tmp_path / "h.inter"
    p.write_text("user\titemID\tx_label\n0\t0\t0\n")
    with pytest.raises(DataError, match=r"h\.inter:1: header must contain.*missing userID"):
        load_inter(p)
    p.write_text(HEADER)
    with pytest.raises(DataError, match="no interactions after the header"):
        load_inter(p)


def test_orphan_eval_rows_dropped_and_counted(tmp_path, caplog):
    # user 1 has only valid/test rows -> those 2 rows are dropped, with a warning
    p = _write(tmp_path, "0\t0\t0\n0\t1\t1\n1\t0\t1\n1\t1\t2\n2\t1\t0\n2\t0\t2\n")
    with caplog.at_level(logging.WARNING, logger="cliper.data.interactions"):
        data = load_inter(p)
    assert data.dropped_eval_rows == 2
    assert data.stats()["dropped_eval_rows"] == 2
    assert (len(data.train), len(data.valid), len(data.test)) == (2, 1, 1)
    assert 1 not in set(data.valid.users) | set(data.test.users)
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("dropped 2 valid/test row(s) of 1 user(s)" in m and "d.inter" in m for m in msgs)
