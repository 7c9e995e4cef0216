"""Kill a unit of work with SIGKILL at a named fault point, in a forked child (for resume tests)."""

from __future__ import annotations

import os
import signal
import traceback

from cliper import faults


def killed_in_child(point: str, work) -> int:
    """Run ``work()`` in a forked child that SIGKILLs itself at kill point ``point``; return its signal.

    Forking skips the interpreter start-up of a fresh ``cliper`` process (seconds per run on a
    loaded machine); the child is still a separate process that dies by ``kill -9`` mid-work.
    Skips the calling test where ``os.fork`` is missing.
    """
    import pytest

    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            os.environ[faults.ENV] = point
            faults._counts.clear()
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"the child was not killed at {point} (exit status {os.waitstatus_to_exitcode(status)})")
    return os.WTERMSIG(status)
