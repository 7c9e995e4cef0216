"""Bad inputs a new user may give ``cliper``, each with the words its one error line must contain.

``build_cases(root)`` writes the files under ``root`` and returns ``{name: (argv, must)}``:
``argv`` is the command line after ``cliper``, ``must`` the substrings of the error line
(the file it names, and the line where one applies). docs/reliability.md lists them.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np

HEADER = "userID\titemID\tx_label\n"


def valid_inter_text(n_users: int = 30, n_items: int = 12, seed: int = 0) -> str:
    """Every user has 6 items: 4 train, 1 valid, 1 test; every item is used."""
    rng = random.Random(seed)
    rows = []
    for u in range(n_users):
        items = [(u + k) % n_items for k in range(6)]
        rng.shuffle(items)
        rows += [f"{u}\t{i}\t{lab}" for i, lab in zip(items, (0, 0, 0, 0, 1, 2))]
    return HEADER + "\n".join(rows) + "\n"


def raw_csv_text(n_users: int = 60, n_items: int = 25) -> str:
    lines = ["user_id,item_id,timestamp"]
    for u in range(n_users):
        for k in range(8):
            lines.append(f"U{u:04d},I{(u * 3 + k) % n_items:04d},{1_600_000_000 + u * 100 + k}")
    return "\n".join(lines) + "\n"


def _truncated_gzip(path: Path, text: str) -> Path:
    data = gzip.compress(text.encode("utf-8"))
    path.write_bytes(data[: len(data) // 2])
    return path


def _catalog(path: Path, asins: list[str]) -> Path:
    path.write_text("".join(json.dumps({"asin": a, "title": f"Item {a}"}) + "\n" for a in asins), encoding="utf-8")
    return path


def _store(folder: Path, n: int = 12, d: int = 4, views=("title", "global"), nan_at=None) -> Path:
    """A minimal finished feature store; ``nan_at=(v, row, col)`` poisons one value of views.npy."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    views_arr = rng.standard_normal((len(views), n, d)).astype(np.float32)
    if nan_at is not None:
        views_arr[nan_at] = np.nan
    np.save(folder / "views.npy", views_arr)
    np.save(folder / "image.npy", rng.standard_normal((n, d)).astype(np.float32))
    np.save(folder / "image_mask.npy", np.ones(n, bool))
    np.save(folder / "similarity.npy", np.zeros((n, len(views)), np.float32))
    np.save(folder / "item_ids.npy", np.arange(n, dtype=np.int64))
    (folder / "manifest.json").write_text(json.dumps({"views": {"names": list(views)}}), encoding="utf-8")
    return folder


def build_cases(root: Path, clip_dir: Path | None = None) -> dict[str, tuple[list[str], list[str]]]:
    root.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[list[str], list[str]]] = {}
    ds = root / "ds"
    ds.mkdir()
    (ds / "ds.inter").write_text(valid_inter_text(), encoding="utf-8")
    train = ["train", "-d", str(ds), "-m", "bpr", "--output"]

    # ---- interaction files (.inter)
    p = _truncated_gzip(root / "cut.inter.gz", valid_inter_text(400, 50))
    cases["inter_gzip_truncated"] = (["data", "stats", str(p)], [str(p), "truncated"])
    p = root / "random.inter"
    p.write_bytes(random.Random(1).randbytes(3000))
    cases["inter_random_bytes"] = (["data", "stats", str(p)], [str(p)])
    p = root / "latin1.inter"
    p.write_bytes((HEADER + "0\t0\t0\n0\t1\t1\n0\t2\t2\n").encode() + b"1\t\xff\t0\n")
    cases["inter_non_utf8"] = (["data", "stats", str(p)], [f"{p}:5", "not UTF-8"])
    for name, big in (("inter_id_2e9", "2000000000"), ("inter_id_1e12", "1000000000000"),
                      ("inter_id_beyond_int64", "99999999999999999999999")):
        p = root / f"{name}.inter"
        p.write_text(valid_inter_text(500, 50) + f"7\t{big}\t0\n", encoding="utf-8")
        cases[name] = (["data", "stats", str(p)], [str(p), big])
    p = root / "notrain.inter"
    p.write_text(HEADER + "0\t0\t1\n0\t1\t2\n1\t0\t1\n", encoding="utf-8")
    cases["inter_no_train"] = (["data", "stats", str(p)], [str(p), "no train interactions"])
    cases["stats_missing_file"] = (["data", "stats", str(root / "nope.inter")], [str(root / "nope.inter")])

    # ---- raw logs (data build)
    p = _truncated_gzip(root / "cut.csv.gz", raw_csv_text(400))
    cases["raw_csv_gzip_truncated"] = (["data", "build", str(p), "-o", str(root / "o1")], [str(p), "truncated"])
    jl = "".join(json.dumps({"user_id": f"U{u}", "item_id": f"I{u % 9}"}) + "\n" for u in range(3000))
    p = _truncated_gzip(root / "cut.jsonl.gz", jl)
    cases["raw_jsonl_gzip_truncated"] = (["data", "build", str(p), "-o", str(root / "o2")], [str(p), "truncated"])
    p = root / "random.csv"
    p.write_bytes(random.Random(2).randbytes(3000))
    cases["raw_random_bytes"] = (["data", "build", str(p), "-o", str(root / "o3")], [str(p)])
    p = root / "latin1.csv"
    p.write_bytes(b"user_id,item_id\nA,x\nB,y\nC,caf\xe9\n")
    cases["raw_non_utf8"] = (["data", "build", str(p), "-o", str(root / "o4")], [f"{p}:4", "not UTF-8"])
    p = root / "dup_header.csv"
    p.write_text("user_id,item_id,user_id\nA,x,B\n", encoding="utf-8")
    cases["raw_duplicate_header"] = (["data", "build", str(p), "-o", str(root / "o5")], [f"{p}:1", "user_id"])
    d = root / "a_folder.csv"
    d.mkdir()
    cases["raw_is_a_folder"] = (["data", "build", str(d), "-o", str(root / "o6")], [str(d), "folder"])
    good_raw = root / "good.csv"
    good_raw.write_text(raw_csv_text(), encoding="utf-8")
    f = root / "existing_file"
    f.write_text("keep me\n")
    cases["build_output_is_a_file"] = (["data", "build", str(good_raw), "-o", str(f)], [str(f), "not a folder"])
    cases["bad_option_value"] = (["data", "build", str(good_raw), "-o", str(root / "o7"), "--k-core", "many"],
                                 ["--k-core", "valid integer"])

    # ---- configs and hyperparameters (train)
    y = root / "bad.yaml"
    y.write_text("train:\n  epochs: [1\n", encoding="utf-8")
    cases["config_bad_yaml"] = ([*train, str(root / "r1"), "-c", str(y)], [str(y), "invalid YAML"])
    y2 = root / "latin1.yaml"
    y2.write_bytes(b"train:\n  epochs: 3 # caf\xe9\n")
    cases["config_non_utf8"] = ([*train, str(root / "r1b"), "-c", str(y2)], [f"{y2}:2", "not UTF-8"])
    cases["config_is_a_folder"] = ([*train, str(root / "r1c"), "-c", str(root)], [str(root), "folder"])
    cases["config_unknown_key"] = ([*train, str(root / "r2"), "-o", "train.epochz=3"], ["train.epochz", "epochs"])
    cases["config_wrong_type"] = ([*train, str(root / "r3"), "-o", "train.epochs=many"], ["train.epochs"])
    cases["model_embedding_dim_0"] = ([*train, str(root / "r4"), "-o", "model.embedding_dim=0"],
                                      ["model.embedding_dim", "greater than 0"])
    cases["model_negative_layers"] = (["train", "-d", str(ds), "-m", "lightgcn", "--output", str(root / "r5"),
                                       "-o", "model.n_layers=-1"], ["model.n_layers", "greater than or equal to 0"])
    cases["config_threads_0"] = ([*train, str(root / "r6"), "-o", "threads=0"], ["threads"])
    cases["grid_empty_axis"] = ([*train, str(root / "r7"), "-g", "model.reg_weight=[]"], ["model.reg_weight"])
    cases["train_no_train_interactions"] = (["train", "-d", str(root / "notrain.inter"), "-m", "bpr", "--output",
                                             str(root / "r8")], [str(root / "notrain.inter"), "no train"])
    nv = root / "novalid.inter"
    nv.write_text(HEADER + "".join(f"{u}\t{(u + k) % 5}\t{0 if k < 3 else 2}\n" for u in range(8) for k in range(4)))
    cases["train_no_valid_interactions"] = (["train", "-d", str(nv), "-m", "bpr", "--output", str(root / "r8b")],
                                            [str(nv), "no valid interactions"])
    cases["evaluate_negative_topk"] = (["evaluate", str(root / "r9"), "--save-topk", "-3"], ["--save-topk", "-3"])

    # ---- features
    nan_file = root / "image_feat.npy"
    arr = np.ones((12, 4), np.float32)
    arr[3, 1] = np.inf
    np.save(nan_file, arr)
    cases["feature_file_inf"] = (["train", "-d", str(ds), "-m", "vbpr", "--output", str(root / "r10"),
                                  "-o", f"features.image={nan_file}", "-o", "train.epochs=1"],
                                 [str(nan_file), "row 3", "column 1"])
    fstore = _store(root / "store_ok")
    cases["fusion_cannot_train"] = (["train", "-d", str(ds), "-m", "freedom", "--output", str(root / "r11"),
                                     "-o", f"features.store={fstore}", "-o", "features.fusion=mlp",
                                     "-o", "model.reg_weight=0"],
                                    ["'freedom'", "features.fusion='mlp'", "reg_weight=0"])
    store = _store(root / "store_nan", nan_at=(1, 7, 2))
    cases["feature_store_nan"] = (["export-mmrec", str(store), str(root / "mm")],
                                  [str(store / "views.npy"), "'global'", "row 7", "column 2"])

    # ---- catalogue, id map, encoder (extract): these fail before any model is loaded
    idmap = root / "i_id_mapping.tsv"
    idmap.write_text("asin\titemID\n" + "".join(f"A{i}\t{i}\n" for i in range(12)), encoding="utf-8")
    ext = ["extract", "--encoder", str(clip_dir or root / "no-model"), "-q"]
    empty = root / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    cases["catalog_empty"] = ([*ext, "--catalog", str(empty), "--id-map", str(idmap), "--output", str(root / "s1")],
                              [str(empty), "no records"])
    other = _catalog(root / "other.jsonl", [f"B{i}" for i in range(12)])
    cases["id_map_matches_nothing"] = ([*ext, "--catalog", str(other), "--id-map", str(idmap),
                                        "--output", str(root / "s2")], [str(other), "none of the 12"])
    cat = _catalog(root / "meta.jsonl", [f"A{i}" for i in range(12)])
    cases["extract_batch_size_0"] = ([*ext, "--catalog", str(cat), "--output", str(root / "s0"), "--batch-size", "0"],
                                     ["--batch-size", "greater than or equal to 1"])
    nohead = root / "nohead.tsv"
    nohead.write_text("".join(f"A{i}\t{i}\n" for i in range(12)), encoding="utf-8")
    cases["id_map_without_header"] = ([*ext, "--catalog", str(cat), "--id-map", str(nohead),
                                       "--output", str(root / "s3")], [f"{nohead}:1", "no header"])
    twice = root / "twice.tsv"
    twice.write_text("asin\titemID\nA0\t0\nA1\t1\nA2\t1\n", encoding="utf-8")
    cases["id_map_two_keys_one_id"] = ([*ext, "--catalog", str(cat), "--id-map", str(twice),
                                        "--output", str(root / "s4")], [f"{twice}:4", "'A1'", "'A2'"])
    if clip_dir is not None:
        import shutil

        cut = root / "clip_truncated"
        shutil.copytree(clip_dir, cut)
        w = cut / "model.safetensors"
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
        cases["encoder_truncated_weights"] = (["extract", "--encoder", str(cut), "-q", "--catalog", str(cat),
                                               "--id-map", str(idmap), "--output", str(root / "s5")], [str(cut)])
        noconf = root / "clip_no_config"
        shutil.copytree(clip_dir, noconf)
        (noconf / "config.json").unlink()
        cases["encoder_without_config_json"] = (["extract", "--encoder", str(noconf), "-q", "--catalog", str(cat),
                                                 "--id-map", str(idmap), "--output", str(root / "s6")],
                                                [str(noconf), "config.json"])
    return cases
