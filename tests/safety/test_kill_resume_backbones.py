"""kill -9 training at chosen points, resume, and get exactly the uninterrupted run -- every backbone.

The training process kills itself (``CLIPER_KILL_AT``, :mod:`cliper.faults`) at a
deterministic point: after an epoch's log row but before its checkpoint, after a checkpoint,
right after a new ``best.pt``, between writing a checkpoint's temp file and renaming it, and
after training but before ``metrics.json``. The backbone sweep forks the killed process (no
interpreter start-up); one test kills a real ``cliper train`` command.
"""

from __future__ import annotations

import signal

import pytest
from safety_helpers import assert_same_run, cli_train, config, killed_in_child, write_inputs

from cliper.models.registry import BUILTIN
from cliper.training.runner import train_run

POINTS = ["train.logged:2", "train.checkpoint:2", "train.best:1", "checkpoint.tmp_written:3", "train.fitted:1"]
MODELS = sorted(BUILTIN)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Inputs and one uninterrupted run per backbone (made on demand, shared by the tests)."""
    root = tmp_path_factory.mktemp("killref")
    inputs = write_inputs(root / "in")
    runs = {}

    def get(model: str):
        if model not in runs:
            train_run(config(inputs, model), root / model, progress=False)
            runs[model] = root / model
        return runs[model]

    return inputs, get


def _kill_then_resume(inputs, model, point, run):
    killed_in_child(point, lambda: train_run(config(inputs, model), run, progress=False))
    assert not (run / "metrics.json").exists()
    train_run(config(inputs, model), run, resume=True, progress=False)


@pytest.mark.parametrize("model", MODELS)
def test_every_backbone_resumes_exactly_after_kill_9(model, reference, tmp_path):
    inputs, get = reference
    point = POINTS[MODELS.index(model) % len(POINTS)]
    _kill_then_resume(inputs, model, point, tmp_path / "run")
    assert_same_run(get(model), tmp_path / "run")


@pytest.mark.parametrize("point", POINTS)
def test_every_kill_point_resumes_exactly(point, reference, tmp_path):
    inputs, get = reference
    _kill_then_resume(inputs, "lattice", point, tmp_path / "run")
    assert_same_run(get("lattice"), tmp_path / "run")


def test_cli_train_killed_at_a_checkpoint_resumes_exactly(reference, tmp_path):
    """A real `cliper train` process, killed after epoch 3's checkpoint, then `--resume`d from the CLI."""
    inputs, get = reference
    run = tmp_path / "run"
    killed = cli_train(inputs, "vbpr", run, env={"CLIPER_KILL_AT": "train.checkpoint:3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    done = cli_train(inputs, "vbpr", run, "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_run(get("vbpr"), run)
