"""The ``ray`` engine: cliper's stages on a Ray cluster (``pip install "cliper[ray]"``).

- :meth:`RayEngine.map_stages` is a Ray Data pipeline: ``from_items`` (one block per
  item) -> ``map`` (``prepare``, Ray tasks) -> ``map_batches`` over an actor pool of
  ``workers`` actors (``worker()`` called once per actor: the model is loaded once, on
  the actor's GPU when ``gpus`` > 0) -> results streamed back to the driver.
  Ray Data restarts an actor that dies and retries its batch (its defaults
  ``max_restarts=-1``, ``max_task_retries=-1``; prepare tasks ``max_retries=-1``), and the
  stages skip what is already written, so a worker that dies costs only its unfinished item.
- :meth:`RayEngine.run_tasks` submits one Ray task per job with ``num_cpus``/``num_gpus``
  and ``max_retries``; the task sets torch's threads to its CPU budget first, so a job
  computes exactly what it computes locally with that many threads.

The driver's ``CLIPER_*`` and Hugging Face offline/cache variables are passed to every
worker (``runtime_env``), so ``--offline``, ``CLIPER_CACHE_DIR`` and the threads setting
mean the same thing on the cluster. Stage outputs must go to storage every node sees.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cliper.engines.base import Engine, Outcome, Resources
from cliper.outputs import delegation_env
from cliper.errors import CliperError, ConfigError

log = logging.getLogger(__name__)

INSTALL_HINT = 'the ray engine needs Ray: pip install "cliper[ray]" (or pip install "ray[data]>=2.9")'
PREPARE_CPUS = 0.5  # per prepare task (view texts + image bytes: light, mostly I/O)
_FORWARD = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_HUB_CACHE")


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise CliperError(INSTALL_HINT) from None
    return ray


def forwarded_env() -> dict[str, str]:
    """The driver's settings that workers must share (threads, cache folder, offline mode, test hooks)."""
    return {k: v for k, v in os.environ.items() if k.startswith("CLIPER_") or k in _FORWARD}


class RayEngine(Engine):
    name = "ray"

    def __init__(self, resources: Resources | None = None, address: str | None = None) -> None:
        super().__init__(resources)
        self._ray = _import_ray()
        self.address = address
        self._started = False

    def describe(self) -> str:
        r = self.resources
        return (f"ray ({self.address or 'local instance'}; workers {r.workers or 'auto'}, "
                f"{r.cpus:g} CPU / {r.gpus:g} GPU each)")

    def _connect(self):
        ray = self._ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if self.address:
                kwargs["address"] = self.address
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise CliperError(f"cannot connect to the Ray cluster at {self.address}: {exc}") from None
            self._started = True
        return ray

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

    def _runtime_env(self) -> dict[str, Any]:
        # the driver holds the output folders; its workers write inside them
        return {"env_vars": {**forwarded_env(), **delegation_env()}}

    # -- many small items: Ray Data, actor pool --------------------------------------------
    def map_stages(self, items: Sequence[Any], prepare: Callable[[Any], Any],
                   worker: Callable[[], Callable[[Any], Any]]) -> Iterator[Any]:
        if not items:
            return
        ray = self._connect()
        res = self.resources
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        size = self._pool_size(ray, len(items))
        env = self._runtime_env()
        ds = ray.data.from_items([{"item": pickle.dumps(it)} for it in items], override_num_blocks=len(items))
        # Fault tolerance is Ray Data's own: tasks whose worker dies are retried (max_retries=-1)
        # and dead actors restarted with their batch retried (max_restarts=max_task_retries=-1);
        # exceptions raised by the stages are not retried.
        ds = ds.map(_Prepare(prepare), num_cpus=PREPARE_CPUS, runtime_env=env)
        ctor = {"factory": worker, "threads": res.threads, "gpus": res.gpus}
        ds = ds.map_batches(_Worker, fn_constructor_kwargs=ctor,
                            batch_size=1, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=size),
                            num_cpus=res.cpus, num_gpus=res.gpus or None, runtime_env=env)
        try:
            for row in ds.iter_rows():
                yield pickle.loads(row["result"])
        except Exception as exc:
            user = _cliper_error(exc)
            if user is not None:  # a user error inside a stage: the same one line as on the local engine
                raise user from None
            raise

    def _pool_size(self, ray, n_items: int) -> int:
        """Actors in the pool: ``workers``, else what the cluster has now. A CPU-only pool always
        leaves CPU for the prepare tasks (a pool holding every CPU would wait forever for input)."""
        res = self.resources
        total = ray.cluster_resources()
        if res.gpus:  # an autoscaling cluster may have no GPU yet: trust --workers
            return max(1, min(res.workers or int(total.get("GPU", 0) // res.gpus) or 1, n_items))
        cpus = total.get("CPU", 0)
        room = int((cpus - PREPARE_CPUS) // res.cpus)
        if room < 1:
            raise ConfigError(f"a worker needs {res.cpus:g} CPUs but the cluster has {cpus:g}, of which "
                              f"{PREPARE_CPUS:g} go to loading: lower --cpus-per-worker")
        size = res.workers or room
        if size > room:
            log.warning("%d workers x %g CPU leave no CPU for loading; using %d workers", size, res.cpus, room)
            size = room
        return max(1, min(size, n_items))

    # -- few long jobs: one Ray task each -------------------------------------------------------
    def run_tasks(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Outcome]:
        if not jobs:
            return
        ray = self._connect()
        res = self.resources
        remote = ray.remote(_run_job).options(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=res.max_retries,
                                              retry_exceptions=False, runtime_env=self._runtime_env())
        limit = res.workers or len(jobs)
        pending: dict[Any, int] = {}
        queue = list(enumerate(jobs))
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    i, job = queue.pop(0)
                    pending[remote.remote(fn, job, res.threads, res.gpus)] = i
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        value = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        yield Outcome(i, error=_one_line(exc))
                    else:
                        yield Outcome(i, value)
        finally:  # interrupted (Ctrl-C, an error in the caller): stop what still runs; checkpoints stay
            for ref in pending:
                ray.cancel(ref, force=True)


def _set_budget(threads: int, gpus: float) -> None:
    """Torch threads = the worker's CPUs; a worker given no GPU sees none (``device: auto`` -> CPU)."""
    import torch

    os.environ["CLIPER_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    if not gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def _run_job(fn: Callable[[Any], Any], job: Any, threads: int, gpus: float = 0.0) -> Any:
    """Body of a Ray task: the worker's CPU/GPU budget, then the job."""
    _set_budget(threads, gpus)
    return fn(job)


# Rows of the Ray Data pipeline carry this job's own objects (chunk plans, prepared chunks,
# outcomes) as pickled bytes, because Arrow rows hold no Python objects. Those bytes are made
# and read only inside one running job, by its driver and workers (Ray pickles every task
# argument the same way); nothing read from a file or a user is ever unpickled here.
class _Prepare:
    """Ray Data row function: unpickle an item, run ``prepare``, pickle the result."""

    def __init__(self, prepare: Callable[[Any], Any]) -> None:
        self.prepare = prepare

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"prepared": pickle.dumps(self.prepare(pickle.loads(row["item"])))}


class _Worker:
    """Ray Data actor: ``factory()`` once (loads the model), then one prepared item per batch."""

    def __init__(self, factory: Callable[[], Callable[[Any], Any]], threads: int, gpus: float = 0.0) -> None:
        _set_budget(threads, gpus)
        self.work = factory()

    def __call__(self, batch):
        import pyarrow as pa

        out = [pickle.dumps(self.work(pickle.loads(p))) for p in batch.column("prepared").to_pylist()]
        return pa.table({"result": pa.array(out, type=pa.binary())})


def _cliper_error(exc: BaseException) -> CliperError | None:
    """The CliperError a stage raised, found through Ray's wrappers (causes and ``.cause``), or
    read from the text of an actor that died in ``__init__`` (Ray keeps only the message then)."""
    import re

    seen, texts = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, CliperError):
            return exc
        texts.append(str(exc))
        nxt = getattr(exc, "cause", None)
        exc = nxt if isinstance(nxt, BaseException) else (exc.__cause__ or exc.__context__)
    found = re.findall(r"^cliper\.errors\.\w+: (.+)$", "\n".join(texts), flags=re.MULTILINE)
    return CliperError(found[-1].strip()) if found else None


def _one_line(exc: BaseException) -> str:
    """``Type: message`` of the error a task raised (not Ray's wrapper and traceback), on one line."""
    err = getattr(exc, "cause", None) or exc
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
