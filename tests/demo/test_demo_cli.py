"""``cliper demo-data`` through the console entry point."""

from __future__ import annotations

import json
import sys

import pytest

from cliper.cli.main import main


def _run(monkeypatch, args: list[str]) -> int:
    monkeypatch.setattr(sys, "argv", ["cliper", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_demo_data_command_writes_a_catalogue(monkeypatch, tmp_path, capsys):
    out = tmp_path / "demo"
    assert _run(monkeypatch, ["demo-data", "--output", str(out), "--items", "40", "--users", "30", "--seed", "3"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "meta_demo.jsonl").read_text().splitlines()]
    assert len(rows) == 40
    assert (out / "demo.inter").exists() and (out / "SYNTHETIC.txt").exists()


def test_demo_data_errors_are_one_line(monkeypatch, tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo-data", "--output", str(out), "--items", "40", "--users", "30"]
    assert _run(monkeypatch, args) == 0
    capsys.readouterr()
    assert _run(monkeypatch, args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--force" in err and "\n" not in err
    assert _run(monkeypatch, args + ["--force"]) == 0


def test_demo_data_quiet_shows_no_progress_bar(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    args = ["demo-data", "--output", str(tmp_path / "a"), "--items", "40", "--users", "30"]
    assert _run(monkeypatch, args) == 0
    assert "demo images" in capsys.readouterr().err  # the bar, without -q
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert _run(monkeypatch, ["demo-data", "--output", str(tmp_path / "b"), "--items", "40", "--users", "30", "-q"]) == 0
    assert "demo images" not in capsys.readouterr().err
