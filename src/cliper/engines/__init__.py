"""Executors for cliper's pipelines: one set of stages, several ways to run them.

A pipeline (feature extraction, an experiment grid) is written once as plain stage
functions; an :class:`~cliper.engines.base.Engine` only decides *where* they run:

- ``local``: in this process, one after the other (the default; nothing to install);
- ``ray``: on a Ray cluster (``pip install "cliper[ray]"``): Ray Data with an actor pool
  for extraction, one Ray task per training for experiment grids.

Ray is imported only inside :mod:`cliper.engines.ray`, and only when that engine is
asked for, so cliper works without it.
"""

from __future__ import annotations

from cliper.engines.base import Engine, Outcome, Resources
from cliper.errors import ConfigError

ENGINES = ("local", "ray")


def get_engine(name: str | Engine | None = "local", *, address: str | None = None, workers: int | None = None,
               cpus_per_worker: float | None = None, gpus_per_worker: float | None = None,
               max_retries: int = 3) -> Engine:
    """The engine called ``name`` (an :class:`Engine` is returned as is).

    ``address``, ``workers``, ``cpus_per_worker`` and ``gpus_per_worker`` configure the
    ``ray`` engine; giving them to ``local`` is a mistake reported here rather than ignored.
    """
    if isinstance(name, Engine):
        return name
    name = (name or "local").lower()
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    res = Resources(workers=workers, cpus=1.0 if cpus_per_worker is None else float(cpus_per_worker),
                    gpus=0.0 if gpus_per_worker is None else float(gpus_per_worker), max_retries=max_retries)
    if name == "local":
        given = [o for o, v in (("--ray-address", address), ("--workers", workers),
                                ("--cpus-per-worker", cpus_per_worker), ("--gpus-per-worker", gpus_per_worker))
                 if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply to --engine ray")
        from cliper.engines.local import LocalEngine

        return LocalEngine(res)
    from cliper.engines.ray import RayEngine

    return RayEngine(res, address=address)


__all__ = ["ENGINES", "Engine", "Outcome", "Resources", "get_engine"]
