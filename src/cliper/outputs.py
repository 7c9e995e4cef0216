"""Exclusive output folders: one cliper process writes into a folder at a time.

``with exclusive_output(dir):`` creates ``dir``, takes a non-blocking lock on
``dir/.cliper.lock`` (the ``filelock`` library: an OS lock, released by the kernel even
when the process is killed with ``kill -9``) and writes the holder's pid to
``dir/.cliper.owner`` for the message a second writer gets::

    error: runs/a is in use by another cliper process (pid 4242)

Nesting: the lock is reentrant per process (quickstart -> compare -> train on folders
inside one another never waits on itself). A folder inside a folder that another
process holds is refused too: before locking ``dir`` every enclosing folder that has a
lock file is probed, except folders delegated to this process by its parent
(``CLIPER_DELEGATED_OUTPUTS``, set by the Ray engine for its workers, whose driver holds
the experiment folder while they train inside it).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from cliper.errors import CliperError

LOCK_FILE = ".cliper.lock"
# Folders a parent process holds on behalf of its workers (a Ray driver for its tasks):
# their workers may lock folders inside them. Set by the engine from delegation_env().
DELEGATED_ENV = "CLIPER_DELEGATED_OUTPUTS"
OWNER_FILE = ".cliper.owner"

_held: dict[Path, list] = {}  # resolved folder -> [FileLock, depth]
_guard = threading.Lock()


class OutputInUse(CliperError):
    """Another process is writing into this output folder."""

    def __init__(self, folder: Path, pid: int | None):
        self.folder, self.pid = folder, pid
        who = f" (pid {pid})" if pid is not None else ""
        super().__init__(f"{folder} is in use by another cliper process{who}")


def _owner(folder: Path) -> int | None:
    try:
        return int((folder / OWNER_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _try(lock_path: Path) -> FileLock | None:
    lock = FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return None
    return lock


def held_by_this_process(folder: str | Path) -> bool:
    """True when this process holds ``folder`` or a folder enclosing it."""
    p = Path(folder).resolve()
    return any(q in _held for q in (p, *p.parents))


def delegation_env() -> dict[str, str]:
    """Environment for worker processes of this one: the folders held here are theirs to write in."""
    with _guard:
        held = [str(p) for p in _held]
    return {DELEGATED_ENV: os.pathsep.join(held)} if held else {}


def _delegated() -> set[Path]:
    return {Path(p) for p in os.environ.get(DELEGATED_ENV, "").split(os.pathsep) if p}


def _check_enclosing(folder: Path) -> None:
    delegated = _delegated()
    for parent in folder.parents:
        if parent in _held or parent in delegated or not (parent / LOCK_FILE).is_file():
            continue
        probe = _try(parent / LOCK_FILE)
        if probe is None:
            raise OutputInUse(parent, _owner(parent))
        probe.release()


def _remove_if_unused(folder: Path) -> None:
    """A folder this call created and nothing was written to (the command failed early) goes again."""
    try:
        if {p.name for p in folder.iterdir()} <= {LOCK_FILE}:
            (folder / LOCK_FILE).unlink(missing_ok=True)
            folder.rmdir()
    except OSError:
        pass


@contextmanager
def exclusive_output(folder: str | Path) -> Iterator[Path]:
    """Create ``folder`` and hold it for this process until the block ends.

    A folder created here that is still empty at the end (the command failed before
    writing anything) is removed again.
    """
    shown = Path(folder)
    key = shown.resolve()
    with _guard:
        if key in _held:
            _held[key][1] += 1
            created = False
        else:
            _check_enclosing(key)  # before anything is created
            if shown.exists() and not shown.is_dir():
                raise CliperError(f"output {shown} is a file, not a folder; choose a folder for the output")
            created = not shown.exists()
            shown.mkdir(parents=True, exist_ok=True)
            lock = _try(key / LOCK_FILE)
            if lock is None:
                raise OutputInUse(shown, _owner(key))
            (key / OWNER_FILE).write_text(f"{os.getpid()}\n")
            _held[key] = [lock, 1]
    try:
        yield shown
    finally:
        with _guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                (key / OWNER_FILE).unlink(missing_ok=True)
                entry[0].release()
                if created:
                    _remove_if_unused(key)


def holding_output(argument: str):
    """Decorator: run the function while holding the folder passed as ``argument``."""
    import functools
    import inspect

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            folder = signature.bind(*args, **kwargs).arguments[argument]
            with exclusive_output(folder):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
