"""Deterministic crash points for the kill -9 tests.

``CLIPER_KILL_AT=NAME:N`` makes the process ``SIGKILL`` itself the N-th time it passes
:func:`kill_point` ``NAME`` (e.g. ``train.checkpoint:3``: right after the third epoch's
checkpoint is written). Without the variable a kill point costs one dictionary lookup.
Tests use it to stop ``train``, ``extract``, ``finetune`` and ``compare`` at chosen
places and check that resuming gives exactly the uninterrupted result.
"""

from __future__ import annotations

import os
import signal

ENV = "CLIPER_KILL_AT"
_counts: dict[str, int] = {}


def kill_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, nth = spec.rpartition(":")
    if target != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
