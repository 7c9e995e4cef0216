"""build_dataset: raw log -> MMRec folder -> load_inter round trip, determinism, mappings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cliper.data.build import build_dataset
from cliper.data.interactions import load_inter
from cliper.data.kcore import kcore_mask
from cliper.data.raw import ColumnMap
from cliper.errors import DataError


def _raw_pairs_after_kcore(df: pd.DataFrame, k: int) -> set[tuple[str, str]]:
    d = df.drop_duplicates(["reviewerID", "asin"])
    u, _ = pd.factorize(d["reviewerID"])
    i, _ = pd.factorize(d["asin"])
    keep = kcore_mask(u, i, k).keep
    return set(zip(d["reviewerID"][keep], d["asin"][keep]))


def _decoded_pairs(out_dir, inter_name):
    inter = pd.read_csv(out_dir / inter_name, sep="\t")
    umap = pd.read_csv(out_dir / "u_id_mapping.tsv", sep="\t", dtype={"user_id": str})
    imap = pd.read_csv(out_dir / "i_id_mapping.tsv", sep="\t", dtype={"asin": str})
    u_of = dict(zip(umap["userID"], umap["user_id"]))
    i_of = dict(zip(imap["itemID"], imap["asin"]))
    return inter, umap, imap, {(u_of[u], i_of[i]) for u, i in zip(inter["userID"], inter["itemID"])}


def test_round_trip_all_formats(tmp_path, raw_frame):
    raw_frame.to_csv(tmp_path / "r.csv", index=False)
    with open(tmp_path / "r.jsonl", "w") as fh:
        for rec in raw_frame.to_dict("records"):
            fh.write(json.dumps(rec) + "\n")
    raw_frame.to_parquet(tmp_path / "r.parquet")
    texts = []
    for src in ("r.csv", "r.jsonl", "r.parquet"):
        res = build_dataset(tmp_path / src, tmp_path / f"out_{src}", k_core=3, name="toy", progress=False)
        data = load_inter(res.inter)
        s = res.summary
        assert (data.n_users, data.n_items) == (s["users"], s["items"])
        assert (len(data.train), len(data.valid), len(data.test)) == (s["train"], s["valid"], s["test"])
        assert data.dropped_eval_rows == 0
        assert s["rows"]["duplicates_dropped"] == 5
        assert np.diff(data.matrix("train").indptr).min() >= 1  # every user keeps a train item
        inter, umap, imap, pairs = _decoded_pairs(res.inter.parent, "toy.inter")
        assert list(inter.columns) == ["userID", "itemID", "x_label", "timestamp", "rating"]
        assert pairs == _raw_pairs_after_kcore(raw_frame, 3)
        # ids follow sorted original ids, and the mappings are bijections onto 0..n-1
        assert umap["user_id"].tolist() == sorted(umap["user_id"]) and umap["userID"].tolist() == list(range(len(umap)))
        assert imap["asin"].tolist() == sorted(imap["asin"]) and imap["itemID"].tolist() == list(range(len(imap)))
        texts.append(res.inter.read_bytes())
    assert texts[0] == texts[1] == texts[2]


def test_seeded_build_is_byte_identical(tmp_path, raw_frame):
    raw_frame.to_csv(tmp_path / "r.csv", index=False)
    a = build_dataset(tmp_path / "r.csv", tmp_path / "a", k_core=2, seed=11, name="d", progress=False)
    b = build_dataset(tmp_path / "r.csv", tmp_path / "b", k_core=2, seed=11, name="d", progress=False)
    c = build_dataset(tmp_path / "r.csv", tmp_path / "c", k_core=2, seed=12, name="d", progress=False)
    for f in ("d.inter", "u_id_mapping.tsv", "i_id_mapping.tsv", "build_summary.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert a.inter.read_bytes() != c.inter.read_bytes()
    # a different seed moves labels, not pairs
    assert _decoded_pairs(tmp_path / "a", "d.inter")[3] == _decoded_pairs(tmp_path / "c", "d.inter")[3]
    assert a.summary["inter_sha256"] != c.summary["inter_sha256"]


def test_split_counts_through_build(tmp_path):
    # user p: 5 items -> 3/1/1; user q: 20 items -> 16/2/2 (rule in cliper.data.splits.eval_counts)
    rows = [("p", f"i{j:02d}") for j in range(5)] + [("q", f"i{j:02d}") for j in range(20)]
    pd.DataFrame(rows, columns=["user", "item"]).to_csv(tmp_path / "r.csv", index=False)
    res = build_dataset(tmp_path / "r.csv", tmp_path / "o", k_core=1, progress=False)
    inter = pd.read_csv(res.inter, sep="\t")
    got = inter.groupby(["userID", "x_label"]).size().unstack(fill_value=0)
    assert got.loc[0].tolist() == [3, 1, 1]
    assert got.loc[1].tolist() == [16, 2, 2]
    assert list(inter.columns) == ["userID", "itemID", "x_label"]  # no timestamp column in, none out


def test_temporal_build_and_dedup_keeps_earliest(tmp_path):
    rows = [
        ("u1", "a", 10), ("u1", "b", 30), ("u1", "c", 20), ("u1", "d", 5),
        ("u2", "a", 7), ("u2", "b", 7), ("u2", "c", 1),
        ("u1", "d", 1),  # duplicate of (u1, d): the earlier time (1) is kept
    ]
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(tmp_path / "r.csv", index=False)
    res = build_dataset(tmp_path / "r.csv", tmp_path / "o", k_core=1, split="temporal", progress=False)
    inter, _, _, _ = _decoded_pairs(tmp_path / "o", "o.inter")
    umap = pd.read_csv(tmp_path / "o" / "u_id_mapping.tsv", sep="\t")
    imap = pd.read_csv(tmp_path / "o" / "i_id_mapping.tsv", sep="\t")
    inter["u"] = inter["userID"].map(dict(zip(umap["userID"], umap["user_id"])))
    inter["i"] = inter["itemID"].map(dict(zip(imap["itemID"], imap["asin"])))
    lab = {(r.u, r.i): r.x_label for r in inter.itertuples()}
    assert lab[("u1", "b")] == 2 and lab[("u1", "c")] == 1  # latest -> test, second latest -> valid
    assert lab[("u1", "a")] == 0 and lab[("u1", "d")] == 0
    assert lab[("u2", "b")] == 2 and lab[("u2", "a")] == 1  # tie at t=7: larger item id is "later"
    assert int(inter.loc[(inter.u == "u1") & (inter.i == "d"), "timestamp"].iloc[0]) == 1
    assert res.summary["rows"]["duplicates_dropped"] == 1
    # rows are sorted by user, then time
    assert inter.groupby("userID")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()


def test_numeric_ids_sorted_numerically_and_custom_headers(tmp_path):
    pd.DataFrame({"user": [10, 9, 100, 9], "item": [3, 20, 3, 3]}).to_csv(tmp_path / "r.csv", index=False)
    res = build_dataset(
        tmp_path / "r.csv", tmp_path / "o", k_core=1, item_header="item_raw", user_header="uid", progress=False
    )
    umap = pd.read_csv(res.user_mapping, sep="\t")
    imap = pd.read_csv(res.item_mapping, sep="\t")
    assert list(umap.columns) == ["uid", "userID"] and umap["uid"].tolist() == [9, 10, 100]
    assert list(imap.columns) == ["item_raw", "itemID"] and imap["item_raw"].tolist() == [3, 20]


def test_build_errors(tmp_path):
    (tmp_path / "r.csv").write_text("user,item\na,x\nb,y\n")
    with pytest.raises(DataError, match=r"r\.csv: no interactions left after 5-core"):
        build_dataset(tmp_path / "r.csv", tmp_path / "o", progress=False)
    with pytest.raises(DataError, match="temporal split needs a timestamp"):
        build_dataset(tmp_path / "r.csv", tmp_path / "o", k_core=1, split="temporal", progress=False)
    assert not (tmp_path / "o").exists()  # nothing written on failure
    (tmp_path / "s.csv").write_text("who,what\na,x\n")
    res = build_dataset(
        tmp_path / "s.csv", tmp_path / "o", columns=ColumnMap(user="who", item="what"), k_core=1, progress=False
    )
    assert load_inter(res.inter).n_users == 1
