"""The ``local`` engine: every stage in this process, in order (today's behaviour).

Errors propagate at once (an interrupted local run stops where it is, and the same
command resumes it), and nothing is pickled, so stages may close over live objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cliper.engines.base import Engine, Outcome


class LocalEngine(Engine):
    name = "local"

    def map_stages(self, items: Sequence[Any], prepare: Callable[[Any], Any],
                   worker: Callable[[], Callable[[Any], Any]]) -> Iterator[Any]:
        if not items:
            return
        work = worker()
        for item in items:
            yield work(prepare(item))

    def run_tasks(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Outcome]:
        for i, job in enumerate(jobs):
            yield Outcome(i, fn(job))
