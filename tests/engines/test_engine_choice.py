"""Choosing an engine: the local one needs nothing, Ray is optional and its absence is one clear line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cliper.engines import get_engine
from cliper.engines.local import LocalEngine
from cliper.errors import ConfigError

NO_RAY = textwrap.dedent(
    """
    import contextlib, io, json, sys
    sys.modules["ray"] = None   # `import ray` now raises ImportError, as when Ray is not installed
    from cliper.cli.main import main
    results = []
    for args in json.loads(sys.argv[1]):
        sys.argv, err = ["cliper", *args], io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                main()
                rc = 0
            except SystemExit as exc:
                rc = exc.code
        results.append([rc, err.getvalue()])
    print(json.dumps(results))
    """
)

COMMANDS = [
    ["extract", "--catalog", "meta.jsonl", "--output", "store", "--encoder", "clip", "--engine", "ray"],
    ["compare", "-d", "tiny=data", "--store", "tiny=store", "--output", "out", "-b", "vbpr", "--engine", "ray"],
    ["ablate", "-k", "tau", "-d", "tiny=data", "--store", "tiny=store", "--output", "out", "--engine", "ray"],
    ["train", "-d", "data", "-m", "vbpr", "--output", "run", "-g", "model.reg_weight=[1e-4,1e-3]", "--engine", "ray"],
]


def test_engine_ray_without_ray_is_one_line_naming_the_extra(tmp_path):
    import json

    script = tmp_path / "no_ray.py"
    script.write_text(NO_RAY)
    res = subprocess.run([sys.executable, str(script), json.dumps(COMMANDS)], capture_output=True, text=True,
                         timeout=180, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for command, (rc, err) in zip(COMMANDS, json.loads(res.stdout.strip().splitlines()[-1])):
        lines = err.strip().splitlines()
        assert rc == 2, (command, err)
        assert len(lines) == 1 and lines[0].startswith("error: ") and 'pip install "cliper[ray]"' in lines[0], err
    assert not (tmp_path / "store").exists() and not (tmp_path / "out").exists()  # refused before any work


def test_local_engine_needs_no_ray(tmp_path):
    """Without Ray the package still imports and the local engine runs (Ray is imported only by engines.ray)."""
    code = ("import sys; sys.modules['ray'] = None\n"
            "import cliper.cli.main, cliper.features.extract, cliper.experiments.runner, cliper.training.runner\n"
            "from cliper.engines import get_engine\n"
            "e = get_engine('local'); print(e.name, [o.value for o in e.run_tasks(abs, [-1, -2])])\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["local", "[1,", "2]"]


def test_engine_options_are_checked():
    with pytest.raises(ConfigError, match="unknown engine"):
        get_engine("spark")
    with pytest.raises(ConfigError, match="--workers, --gpus-per-worker only apply to --engine ray"):
        get_engine("local", workers=2, gpus_per_worker=1)
    eng = LocalEngine()
    assert get_engine(eng) is eng


def test_local_engine_runs_stages_in_order_with_one_worker():
    made = []

    def worker():
        made.append(1)
        return lambda x: ("w", x)

    out = list(LocalEngine().map_stages([1, 2, 3], lambda i: i * 10, worker))
    assert out == [("w", 10), ("w", 20), ("w", 30)] and made == [1]  # the worker (model) is built once
    with pytest.raises(ZeroDivisionError):  # local stops at the first error, as before
        list(LocalEngine().run_tasks(lambda x: 1 / x, [1, 0, 2]))
