"""The ``--engine`` options shared by ``extract``, ``train``, ``compare`` and ``ablate``."""

from __future__ import annotations

from typing import Optional

import typer

ENGINE_HELP = "Where the work runs: local (this process) or ray (a Ray cluster; pip install \"cliper[ray]\")."
ADDRESS_HELP = "Ray cluster address (e.g. ray://head:10001 or auto); default: $RAY_ADDRESS, else a local Ray instance."
WORKERS_HELP = "Ray: workers at once (extraction: encoder actors; experiments: concurrent trainings). Default: what the cluster fits."
CPUS_HELP = "Ray: CPUs per worker; also its torch threads (default 1)."
GPUS_HELP = "Ray: GPUs per worker, fractions allowed (default 0)."


def engine_option():
    return typer.Option("local", "--engine", help=ENGINE_HELP)


def address_option():
    return typer.Option(None, "--ray-address", help=ADDRESS_HELP)


def workers_option():
    return typer.Option(None, "--workers", min=1, help=WORKERS_HELP)


def cpus_option():
    return typer.Option(None, "--cpus-per-worker", min=0.0, help=CPUS_HELP)


def gpus_option():
    return typer.Option(None, "--gpus-per-worker", min=0.0, help=GPUS_HELP)


def make_engine(engine: str, address: Optional[str], workers: Optional[int], cpus: Optional[float],
                gpus: Optional[float]):
    """The engine the options name; for ``ray`` without Ray installed, one line saying what to install."""
    from cliper.engines import get_engine

    return get_engine(engine, address=address, workers=workers, cpus_per_worker=cpus, gpus_per_worker=gpus)
