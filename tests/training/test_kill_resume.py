"""kill -9 a real `cliper train` process mid-run, resume it, and compare with an uninterrupted run."""

import json
import signal
import subprocess
import sys
import time

from cliper.testing import tiny_dataset
from cliper.testing import write_inter as _write_inter

ARGS = ["-o", "train.epochs=25", "-o", "train.patience=100", "-o", "train.batch_size=32",
        "-o", "model.embedding_dim=32", "-q"]


def _train(inter, out, *extra):
    cmd = [sys.executable, "-c", "from cliper.cli.main import main; main()", "train", "--dataset", str(inter),
           "--model", "lightgcn", "--output", str(out), *ARGS, *extra]
    return cmd


def test_kill_minus_nine_then_resume_gives_uninterrupted_metrics(tmp_path):
    inter = _write_inter(tiny_dataset(n_users=300, n_items=200, per_user=12, seed=2), tmp_path / "t.inter")
    subprocess.run(_train(inter, tmp_path / "full"), check=True, capture_output=True)
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())

    run = tmp_path / "killed"
    proc = subprocess.Popen(_train(inter, run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    log = run / "epochs.jsonl"
    while time.time() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "metrics.json").exists(), "the run finished before it could be killed"
    done = subprocess.run(_train(inter, run, "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["test"] == full["test"]
    assert resumed["valid"] == full["valid"]
    assert resumed["best_epoch"] == full["best_epoch"]
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert epochs == list(range(1, 26))


def test_without_resume_an_interrupted_folder_is_refused(tmp_path):
    inter = _write_inter(tiny_dataset(n_users=30, n_items=20, per_user=6, seed=2), tmp_path / "t.inter")
    run = tmp_path / "r"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"")
    res = subprocess.run(_train(inter, run), capture_output=True, text=True)
    assert res.returncode == 2
    assert "--resume" in res.stderr and "Traceback" not in res.stderr
