"""The documentation: the site builds strictly, the README stays short and its links resolve,
and the benchmarks page (and the README's results table) are exactly what the JSON results render."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_README_LINES = 150


def _render_module():
    spec = importlib.util.spec_from_file_location("cliper_bench_render", ROOT / "benchmarks" / "render.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mkdocs_build_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs not installed (pip install -e '.[docs]'; .ci/run installs it)")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "models" / "index.html").is_file()


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}); move material to docs/"


def test_benchmarks_page_is_rendered_from_the_json_results():
    render = _render_module()
    expected = render.render(render.RESULTS_DIR)
    actual = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/benchmarks.md differs from the JSON results: run python benchmarks/render.py"


def test_readme_results_table_is_rendered_from_the_json_results():
    render = _render_module()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text == render.render_readme(text, render.RESULTS_DIR), "run python benchmarks/render.py"


def test_every_result_file_has_the_shared_shape():
    results = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    assert results, "no benchmark results committed"

    for path in results:
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert {"benchmark", "command", "date", "machine", "columns", "rows", "notes"} <= set(doc), path
        assert {"cores", "threads", "loadavg", "torch", "python", "platform"} <= set(doc["machine"]), path
        assert doc["command"].startswith("python benchmarks/"), path
        for row in doc["rows"]:  # rows may carry extra fields; the page shows the columns
            assert isinstance(row, dict) and set(doc["columns"]) & set(row), (path, row)


def test_readme_relative_links_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if re.match(r"^[a-z]+:", link) or link.startswith("#"):
            continue
        target = (ROOT / link.split("#")[0]).resolve()
        assert target.exists(), f"README links to {link}, which does not exist"
