"""Bad inputs through the real ``cliper`` entry point: exit 2, ONE ``error:`` line naming the file.

All cases run in one driver subprocess (``cli_driver.py``; startup is paid once), each
with its own stderr. Filesystem failures that need a real full or read-only disk, or an
unreadable file, run under ``unshare`` (a private mount / user namespace) and are skipped
where it is not available. Ctrl-C is a real SIGINT to a real ``cliper train``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bad_input_cases import build_cases, raw_csv_text, valid_inter_text

DRIVER = Path(__file__).with_name("cli_driver.py")
LOG_PREFIXES = ("INFO: ", "WARNING: ")  # logging.basicConfig format of cliper.cli.main


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


def run_driver(cases: dict, tmp: Path, wrapper: list[str] | None = None, timeout: float = 300) -> dict:
    spec, out = tmp / "cases.json", tmp / "results.json"
    spec.write_text(json.dumps([{"name": k, "argv": v[0]} for k, v in cases.items()]))
    cmd = [*(wrapper or []), sys.executable, str(DRIVER), str(spec), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert r.returncode == 0 and out.is_file(), r.stderr[-3000:]
    return json.loads(out.read_text())


def assert_one_error_line(name: str, result: dict, must: list[str]) -> str:
    """Exit 2; besides log records, stderr is exactly one line, starting with ``error:``, naming ``must``."""
    lines = [ln for ln in result["stderr"].splitlines() if ln.strip()]
    other = [ln for ln in lines if not ln.startswith(LOG_PREFIXES)]
    assert result["code"] == 2, f"{name}: exit {result['code']}\n{result['stderr']}"
    assert len(other) == 1 and other[0].startswith("error: "), f"{name}: stderr was\n{result['stderr']}"
    assert "Traceback" not in result["stderr"]
    for m in must:
        assert m in other[0], f"{name}: {m!r} not in {other[0]!r}"
    return other[0]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from cliper.encoders.tiny import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny", seed=0)


def test_every_bad_input_is_one_line_naming_the_file(tmp_path, clip_dir):
    cases = build_cases(tmp_path / "in", clip_dir)
    results = run_driver(cases, tmp_path)
    for name, (_argv, must) in cases.items():
        assert_one_error_line(name, results[name], must)
    # hostile ids are rejected before anything is sized by them: well under a second each
    for name in ("inter_id_2e9", "inter_id_1e12", "inter_id_beyond_int64"):
        assert results[name]["seconds"] < 1.0, (name, results[name]["seconds"])
    assert "not contiguous" in results["inter_id_1e12"]["stderr"]
    assert max(r["maxrss_mb"] for r in results.values()) < 2000


def _unshare_ok(args: list[str]) -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", *args, "true"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _unshare_ok(["--user", "--map-root-user", "--mount"]),
                    reason="needs unshare with user + mount namespaces (a private tmpfs)")
def test_full_disk_and_read_only_fs_are_one_line_and_leave_no_tmp(tmp_path):
    raw = tmp_path / "raw.csv"
    raw.write_text(raw_csv_text(400, 60), encoding="utf-8")  # its .inter is ~20 KB
    full, ro = tmp_path / "full", tmp_path / "ro"
    full.mkdir()
    ro.mkdir()
    cases = {
        "disk_full": (["data", "build", str(raw), "-o", str(full / "ds"), "--k-core", "0"],
                      [str(full / "ds"), "no space left"]),
        "read_only": (["data", "build", str(raw), "-o", str(ro / "ds"), "--k-core", "0"],
                      [str(ro / "ds"), "read-only"]),
        "train_output_read_only": (["train", "-d", str(tmp_path / "ds"), "-m", "bpr", "--output", str(ro / "run")],
                                   [str(ro / "run"), "read-only"]),
    }
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "ds.inter").write_text(valid_inter_text(), encoding="utf-8")
    listing = tmp_path / "listing.txt"
    script = (f"mount -t tmpfs -o size=8k tmpfs {full} && mount -t tmpfs -o ro tmpfs {ro} && "
              f'"$@"; rc=$?; find {full} {ro} > {listing}; exit $rc')
    results = run_driver(cases, tmp_path, ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"])
    for name, (_argv, must) in cases.items():
        assert_one_error_line(name, results[name], must)
    left = listing.read_text().split()
    assert not [p for p in left if p.endswith(".tmp")], left
    # nothing is left behind: the half-written file is removed, and so is the (then empty) output
    # folder the failed command created (cliper.outputs.exclusive_output)
    assert sorted(left) == sorted([str(full), str(ro)]), left


@pytest.mark.skipif(os.geteuid() == 0 and not _unshare_ok(["--user", "--map-user=1000", "--map-group=1000"]),
                    reason="root reads any file; needs unshare to drop that")
def test_folder_holding_an_unreadable_inter(tmp_path):
    d = tmp_path / "locked"
    d.mkdir()
    inter = d / "locked.inter"
    inter.write_text(valid_inter_text(), encoding="utf-8")
    inter.chmod(0)
    cases = {"unreadable_inter": (["data", "stats", str(d)], [str(inter), "permission denied"])}
    wrapper = ["unshare", "--user", "--map-user=1000", "--map-group=1000"] if os.geteuid() == 0 else []
    try:
        results = run_driver(cases, tmp_path, wrapper)
    finally:
        inter.chmod(0o644)
    assert_one_error_line("unreadable_inter", results["unreadable_inter"], cases["unreadable_inter"][1])


def test_ctrl_c_prints_the_interrupted_line(tmp_path):
    """A real SIGINT mid-training: typer used to turn it into a silent exit 130."""
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "ds.inter").write_text(valid_inter_text(300, 80), encoding="utf-8")
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "import sys; sys.argv[0] = 'cliper'; from cliper.cli.main import main; main()",
           "train", "-d", str(ds), "-m", "bpr", "--output", str(out), "-q",
           "-o", "train.epochs=100000", "-o", "train.patience=100000", "-o", "train.eval_step=1000"]
    # a shell's background job inherits SIGINT ignored, and Python then installs no handler: restore the default
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not (out / "config.yaml").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # into the epoch loop
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    try:
        _stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(LOG_PREFIXES)]
    assert proc.returncode == 130, stderr
    assert lines == ["interrupted: finished work is kept; rerun the same command (with --resume) to continue"], stderr
