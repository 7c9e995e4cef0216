"""Exclusive output folders: a second cliper process writing into a held folder is refused at once.

The holder is always a real second process (a `cliper train` command, or a small Python
process holding folders through :func:`cliper.outputs.exclusive_output`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from safety_helpers import CLI, config, train_overrides, write_inputs

from cliper.errors import CliperError
from cliper.outputs import OWNER_FILE, OutputInUse, exclusive_output, held_by_this_process

HOLDER = textwrap.dedent("""
    import sys
    from contextlib import ExitStack
    from cliper.outputs import exclusive_output
    with ExitStack() as stack:
        for d in sys.argv[1:]:
            stack.enter_context(exclusive_output(d))
        print("held", flush=True)
        sys.stdin.read()   # hold until the parent closes our stdin
""")


class Holder:
    """A separate process holding ``folders`` until closed (or killed)."""

    def __init__(self, *folders):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, *map(str, folders)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"
        self.pid = self.proc.pid

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def inputs(tmp_path):
    return write_inputs(tmp_path / "in")


def test_a_second_cliper_train_into_a_busy_folder_is_refused_at_once(inputs, tmp_path):
    run = tmp_path / "run"
    first_args = [*CLI, "train", "--dataset", str(inputs["inter"]), "--model", "lightgcn", "--output", str(run), "-q"]
    for o in [*train_overrides(inputs, "lightgcn", epochs=100000, features=False), "train.patience=100000"]:
        first_args += ["-o", o]  # runs until killed
    first = subprocess.Popen(first_args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "epochs.jsonl").is_file() and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert (run / "epochs.jsonl").is_file(), "the first run did not start training"
        config_before = (run / "config.yaml").read_text()
        t0 = time.perf_counter()
        second = subprocess.run([*first_args, "-o", "train.learning_rate=0.5"], capture_output=True,
                                text=True, timeout=120)
        waited = time.perf_counter() - t0
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip() == f"error: {run} is in use by another cliper process (pid {first.pid})"
        assert first.poll() is None and waited < 60  # refused without waiting for the first run to end
        assert (run / "config.yaml").read_text() == config_before  # nothing of the second run was written
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        first.stderr.close()
    with exclusive_output(run):  # kill -9 released the lock: the folder is free again
        assert held_by_this_process(run)


def _writers(inputs, demo, tmp_path):
    """Every command that writes an output folder, as a call on ``folder``."""
    from cliper.data.build import build_dataset
    from cliper.experiments.ablation import run_ablation
    from cliper.experiments.compare import run_compare
    from cliper.experiments.quickstart import run_quickstart
    from cliper.experiments.spec import DatasetEntry, ExperimentSpec
    from cliper.features.extract import extract_features
    from cliper.finetune import finetune_clip
    from cliper.training.runner import train_grid, train_run

    cat, clip = demo
    raw = tmp_path / "raw.csv"
    raw.write_text("user,item\n" + "".join(f"u{u},i{(u * 7 + k) % 9}\n" for u in range(12) for k in range(4)))
    spec = ExperimentSpec(name="t", datasets={"t": DatasetEntry(path=str(inputs["inter"]))}, backbones=["vbpr"],
                          featuresets={"vanilla": {"features.image": str(inputs["image"])},
                                       "cliper": {"features.image": str(inputs["image"]),
                                                  "features.text": str(inputs["text"])}}, seeds=[0])
    grid = config(inputs, "bpr").model_copy(update={"grid": {"train.learning_rate": [0.01, 0.02]}})
    return {
        "train": lambda d: train_run(config(inputs, "bpr"), d, progress=False),
        "train-grid": lambda d: train_grid(grid, d, progress=False),
        "extract": lambda d: extract_features(cat.meta, d, clip, id_map=cat.item_mapping, device="cpu",
                                              progress=False),
        "data-build": lambda d: build_dataset(raw, d, k_core=1, progress=False),
        "compare": lambda d: run_compare(spec, d, progress=False),
        "ablate": lambda d: run_ablation(spec, "dim", d, values=[8], progress=False),
        "finetune": lambda d: finetune_clip(cat.meta, cat.images, d, progress=False),
        "quickstart": lambda d: run_quickstart(d, progress=False),
    }


WRITERS = ["train", "train-grid", "extract", "data-build", "compare", "ablate", "finetune", "quickstart"]


@pytest.mark.parametrize("writer", WRITERS)
def test_every_writer_refuses_a_folder_held_by_another_process(writer, inputs, demo, tmp_path):
    out = tmp_path / "out"
    holder = Holder(out)
    try:
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(OutputInUse) as err:
            _writers(inputs, demo, tmp_path)[writer](out)
        assert str(err.value) == f"{out} is in use by another cliper process (pid {holder.pid})"
        assert sorted(p.name for p in out.iterdir()) == before  # the refused call wrote nothing
    finally:
        holder.close()


def test_a_folder_inside_a_held_folder_is_refused(inputs, tmp_path):
    from cliper.training.runner import train_run

    exp = tmp_path / "exp"
    holder = Holder(exp)
    try:
        with pytest.raises(OutputInUse, match=f"{exp} is in use by another cliper process \\(pid {holder.pid}\\)"):
            train_run(config(inputs, "bpr"), exp / "runs" / "x", progress=False)
    finally:
        holder.close()
    assert not (exp / "runs" / "x").exists()


def test_a_folder_held_inside_is_refused_to_an_enclosing_writer(inputs, tmp_path):
    """compare holding exp/ still meets another process's lock on one of its run folders."""
    from cliper.training.runner import train_run

    exp = tmp_path / "exp"
    holder = Holder(exp / "runs" / "x")
    try:
        with exclusive_output(exp):
            with pytest.raises(OutputInUse, match=f"pid {holder.pid}"):
                train_run(config(inputs, "bpr"), exp / "runs" / "x", progress=False)
    finally:
        holder.close()


def test_nesting_in_one_process_never_waits_on_itself(tmp_path):
    a = tmp_path / "a"
    with exclusive_output(a):
        with exclusive_output(a), exclusive_output(a / "b" / "c"):  # reentrant; inner folders lock too
            assert held_by_this_process(a / "b" / "c") and held_by_this_process(a / "zzz")
            assert int((a / OWNER_FILE).read_text()) == os.getpid()
        assert held_by_this_process(a)
        probe = subprocess.run([sys.executable, "-c", HOLDER, str(a)], input="", capture_output=True, text=True,
                               timeout=120)
        assert probe.returncode != 0 and "is in use by another cliper process" in probe.stderr
    assert not held_by_this_process(a)
    Holder(a).close()  # released: another process can take it


def test_kill_9_of_the_holder_frees_the_folder(tmp_path):
    out = tmp_path / "out"
    holder = Holder(out)
    holder.kill()
    with exclusive_output(out):
        assert int((out / OWNER_FILE).read_text()) == os.getpid()


def test_the_cli_prints_the_lock_error_as_one_line(tmp_path, inputs):
    out = tmp_path / "out"
    holder = Holder(out)
    try:
        res = subprocess.run([*CLI, "data", "build", str(inputs["inter"]), "-o", str(out)], capture_output=True,
                             text=True, timeout=120)
    finally:
        holder.close()
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {out} is in use by another cliper process (pid {holder.pid})"
    assert isinstance(OutputInUse(out, 1), CliperError)
