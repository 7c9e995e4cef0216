"""The engine interface: the two shapes of parallel work cliper's pipelines have.

- :meth:`Engine.map_stages`: many small items through a cheap stateless stage
  (``prepare``: read, build, load -- CPU, I/O) and then a stateful one (``worker``: a
  model loaded once per worker, e.g. a CLIP encoder on its GPU). Extraction chunks.
- :meth:`Engine.run_tasks`: a few long independent jobs, each with its own CPU/GPU and
  thread budget. Trainings of an experiment grid.

Stages are plain picklable callables that do the real work (and write their own
results, atomically); an engine never knows what they compute, so a new engine is one
small file implementing these two methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Resources:
    """What one worker (actor or task) gets.

    ``workers``: how many run at once (None: as many as the cluster fits); ``cpus`` also
    sets the worker's torch threads; ``max_retries``: how often a job of :meth:`Engine.run_tasks`
    whose worker *dies* (process killed, node lost) is re-run (:meth:`Engine.map_stages` uses
    the engine's own policy). An exception raised by a stage is never retried: it is a bug
    or a bad input, and retrying would repeat it.
    """

    workers: int | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    max_retries: int = 3

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))


@dataclass
class Outcome:
    """One job's end: its ``value``, or ``error`` (one line) when it failed."""

    index: int
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Engine(ABC):
    """Runs pipeline stages; see the module docstring. Use as a context manager."""

    name: str = "?"

    def __init__(self, resources: Resources | None = None) -> None:
        self.resources = resources or Resources()

    @abstractmethod
    def map_stages(self, items: Sequence[Any], prepare: Callable[[Any], Any],
                   worker: Callable[[], Callable[[Any], Any]]) -> Iterator[Any]:
        """``worker()(prepare(item))`` for every item, results in any order.

        ``worker`` is a factory called once per worker (so a model is loaded once, not
        once per item); the callable it returns is applied to each prepared item.
        """

    @abstractmethod
    def run_tasks(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Outcome]:
        """``fn(job)`` for every job, each within :attr:`resources`; outcomes as they finish."""

    def close(self) -> None:
        """Release what the engine started (nothing by default)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        return self.name
