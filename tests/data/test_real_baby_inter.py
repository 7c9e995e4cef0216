"""The shared Amazon Baby graph loads with its documented sizes (skipped when absent)."""

from __future__ import annotations

import pytest

from cliper.data.interactions import load_inter
from cliper.paths import shared_dataset


@pytest.mark.realdata
def test_baby_inter_sizes():
    root = shared_dataset("amazon-baby")
    if root is None or not (root / "baby.inter").is_file():
        pytest.skip("shared amazon-baby data not present")
    data = load_inter(root / "baby.inter")
    assert (data.n_users, data.n_items) == (19_445, 7_050)
    assert (len(data.train), len(data.valid), len(data.test)) == (119_674, 20_559, 20_559)
    assert data.dropped_eval_rows == 0


@pytest.mark.realdata
def test_rebuild_baby_from_raw_pairs_reproduces_item_ids(tmp_path):
    """Decode baby.inter to (reviewerID, asin) rows, shuffle, rebuild: same 5-core, same item ids."""
    import pandas as pd

    from cliper.data.build import build_dataset

    root = shared_dataset("amazon-baby")
    if root is None or not (root / "baby.inter").is_file():
        pytest.skip("shared amazon-baby data not present")
    inter = pd.read_csv(root / "baby.inter", sep="\t")
    umap = pd.read_csv(root / "u_id_mapping.tsv", sep="\t", dtype={"user_id": str})
    imap = pd.read_csv(root / "i_id_mapping.tsv", sep="\t", dtype={"asin": str})
    raw = pd.DataFrame(
        {
            "reviewerID": inter["userID"].map(dict(zip(umap["userID"], umap["user_id"]))),
            "asin": inter["itemID"].map(dict(zip(imap["itemID"], imap["asin"]))),
        }
    ).sample(frac=1.0, random_state=0)
    raw.to_csv(tmp_path / "baby_raw.csv", index=False)
    res = build_dataset(tmp_path / "baby_raw.csv", tmp_path / "baby", k_core=5, progress=False)
    s = res.summary
    assert (s["users"], s["items"], s["k_core"]["rounds"]) == (19_445, 7_050, 0)  # already 5-core
    assert s["train"] + s["valid"] + s["test"] == len(inter)
    # MMRec numbers items by sorted ASIN, as build_dataset does
    assert res.item_mapping.read_text() == (root / "i_id_mapping.tsv").read_text()
