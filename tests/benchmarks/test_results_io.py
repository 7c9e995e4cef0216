"""benchmarks/results_io.py records a command that repeats from the repository root."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import results_io  # noqa: E402


def test_the_script_is_named_from_the_root_whatever_folder_it_ran_from(monkeypatch):
    monkeypatch.chdir(ROOT / "benchmarks")
    got = results_io.command_line(["bench_models.py", "--models", "vbpr", "--name", "a b"])
    assert got == "python benchmarks/bench_models.py --models vbpr --name 'a b'"
    monkeypatch.chdir(ROOT)
    assert results_io.command_line(["benchmarks/render.py"]) == "python benchmarks/render.py"


def test_a_script_outside_the_repository_is_kept_as_given(tmp_path, monkeypatch):
    script = tmp_path / "mine.py"
    script.write_text("")
    monkeypatch.chdir(tmp_path)
    assert results_io.command_line(["mine.py", "-x"]) == "python mine.py -x"
