"""`cliper data build` / `cliper data stats` through the real entry point (subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd

ENTRY = "import sys; sys.argv[0] = 'cliper'; from cliper.cli.main import main; main()"


def cliper(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_build_then_stats(tmp_path, raw_frame):
    raw_frame.to_csv(tmp_path / "r.csv", index=False)
    out = tmp_path / "toy"
    r = cliper("data", "build", tmp_path / "r.csv", "--output", out, "--k-core", "3", "--seed", "5")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "build_summary.json").read_text())
    assert (out / "toy.inter").is_file() and summary["seed"] == 5 and summary["k_core"]["user"] == 3
    assert f"{summary['users']:,} users" in r.stdout

    r = cliper("data", "stats", out, "--json")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert (stats["users"], stats["items"]) == (summary["users"], summary["items"])
    assert (stats["train"], stats["valid"], stats["test"]) == (summary["train"], summary["valid"], summary["test"])

    r = cliper("data", "stats", out / "toy.inter")
    assert r.returncode == 0, r.stderr
    table = dict(line.split(None, 1) for line in r.stdout.splitlines()[1:])
    assert table["users"].strip().replace(",", "") == str(summary["users"])
    assert table["test"].strip().replace(",", "") == str(summary["test"])


def test_build_options_columns_and_temporal(tmp_path):
    pd.DataFrame(
        {"who": ["a", "a", "a", "b", "b", "b"], "what": list("xyzxyz"), "when": [1, 2, 3, 3, 2, 1]}
    ).to_csv(tmp_path / "r.txt", index=False, sep=";")
    r = cliper(
        "data", "build", tmp_path / "r.txt", "-o", tmp_path / "o", "--format", "csv", "--sep", ";",
        "--user-col", "who", "--item-col", "what", "--time-col", "when", "--k-core", "2",
        "--split", "temporal", "--name", "tiny",
    )
    assert r.returncode == 0, r.stderr
    inter = pd.read_csv(tmp_path / "o" / "tiny.inter", sep="\t")
    # a's latest is z (item 2), b's latest is x (item 0)
    assert set(inter.loc[inter.x_label == 2, ["userID", "itemID"]].itertuples(index=False)) == {(0, 2), (1, 0)}


def test_bad_input_gives_one_error_line_and_exit_2(tmp_path):
    (tmp_path / "bad.csv").write_text("user,item,timestamp\na,x,100\nb,y,soon\n")
    r = cliper("data", "build", tmp_path / "bad.csv", "-o", tmp_path / "o")
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'bad.csv'}:3: bad timestamp 'soon' (expected unix seconds or an ISO-8601 date)"]
    assert "Traceback" not in r.stderr

    (tmp_path / "bad.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t0\t1\n")
    r = cliper("data", "stats", tmp_path / "bad.inter")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'bad.inter'}:3: duplicate pair user 0 item 0 (also on line 2)"
    )


def test_stats_folder_resolution_errors(tmp_path):
    r = cliper("data", "stats", tmp_path)
    assert r.returncode == 2 and "no *.inter file" in r.stderr
    (tmp_path / "a.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n")
    (tmp_path / "b.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n")
    r = cliper("data", "stats", tmp_path)
    assert r.returncode == 2 and "several .inter files (a.inter, b.inter)" in r.stderr
