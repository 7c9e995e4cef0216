"""The setup the speed/memory probes share, so that every probe builds the model exactly as
``cliper train`` does (packaged YAML defaults, the runner's ``load_dataset`` /
``build_features`` / ``build_model`` / ``Trainer``) with seeded random item features, and
their figures compare with each other and with a real run.

    with random_run("baby", "bpr") as run:
        seconds, losses = time_batches(run.trainer, run.model, 1, 3)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

DATASETS = {"baby": "amazon-baby", "sports": "amazon-sports"}


class Run(NamedTuple):
    cfg: Any
    data: Any
    model: Any
    evaluator: Any
    trainer: Any
    build_seconds: float  # ``build_model`` alone (kNN graphs included), not data or features


def run_parser(doc: str, *, models: str | None = None, dataset: str = "baby") -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line with ``--model`` (required), or ``--models``
    (default ``models``) when given, and ``--dataset``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    if models is None:
        ap.add_argument("--model", required=True)
    else:
        ap.add_argument("--models", default=models)
    ap.add_argument("--dataset", default=dataset, choices=sorted(DATASETS))
    return ap


def add_run_args(ap: argparse.ArgumentParser, *, dims: bool = True, threads: int | None = 1,
                 threads_help: str | None = None, override: bool = True) -> None:
    """``--image-dim`` / ``--text-dim`` (the random feature widths), ``--threads`` and ``-o``."""
    if dims:
        ap.add_argument("--image-dim", type=int, default=4096)
        ap.add_argument("--text-dim", type=int, default=384)
    ap.add_argument("--threads", type=int, default=threads, help=threads_help)
    if override:
        ap.add_argument("-o", "--override", action="append", default=[])


def build_run(dataset: str, model: str, *, image_dim: int = 4096, text_dim: int = 384,
              overrides: Sequence[str] = (), prepare: Callable | None = None) -> Run:
    """Build on CPU in the current ``CLIPER_CACHE_DIR``; ``prepare`` maps the loaded data first."""
    import torch

    from cliper.config.loader import load_config
    from cliper.paths import shared_dataset
    from cliper.training.runner import build_features, build_model, load_dataset, make_evaluator, uses_features
    from cliper.training.trainer import Trainer

    cfg = load_config(overrides=[f"dataset.path={shared_dataset(DATASETS[dataset])}", f"model.name={model}",
                                 "train.checkpoint=false", f"features.random_image_dim={image_dim}",
                                 f"features.random_text_dim={text_dim}", *overrides])
    data = load_dataset(cfg)
    if prepare is not None:
        data = prepare(data)
    features = build_features(cfg, data.n_items) if uses_features(cfg) else None  # as cliper train does
    device = torch.device("cpu")
    t0 = time.perf_counter()
    net = build_model(cfg, data, features, device, own_features=True)
    build_s = time.perf_counter() - t0
    del features
    evaluator = make_evaluator(cfg, data, device)
    trainer = Trainer(net, data, evaluator, cfg.train, cfg.eval.valid_metric, cfg.seed, None,
                      progress=False, device=device)
    return Run(cfg, data, net, evaluator, trainer, build_s)


@contextlib.contextmanager
def random_run(dataset: str, model: str, **kw) -> Iterator[Run]:
    """:func:`build_run` with a cold kNN cache: a fresh ``CLIPER_CACHE_DIR``, removed (and the
    old value restored) on exit."""
    old = os.environ.get("CLIPER_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="cliper-probe-cache-") as cold:
        os.environ["CLIPER_CACHE_DIR"] = cold
        try:
            yield build_run(dataset, model, **kw)
        finally:
            if old is None:
                os.environ.pop("CLIPER_CACHE_DIR", None)
            else:
                os.environ["CLIPER_CACHE_DIR"] = old


def batches_per_epoch(run: Run) -> int:
    return (len(run.data.train) + run.cfg.train.batch_size - 1) // run.cfg.train.batch_size


def time_batches(trainer, model, epoch: int, n: int | None, clock: Callable[[], float] = time.perf_counter
                 ) -> tuple[list[float], list[float]]:
    """Train the first ``n`` batches of ``epoch`` (all of them when ``n`` is None) with the
    trainer's own batches and step (``Trainer.train_step``, ``train.precision`` included), after
    ``model.train()`` and ``pre_epoch_hook``; returns
    the ``clock`` seconds of each step (batch drawing excluded) and each loss."""
    model.train()
    model.pre_epoch_hook(epoch)
    seconds, losses = [], []
    for i, batch in enumerate(trainer.batches(epoch)):
        if i == n:
            break
        t = clock()
        loss = trainer.train_step(batch, epoch)  # the trainer's own step: train.precision's autocast too
        seconds.append(clock() - t)
        losses.append(float(loss))
    return seconds, losses


def other_tree_class(path: str | os.PathLike, class_name: str, module_name: str = "cliper_other_tree"):
    """``class_name`` as another tree's model file at ``path`` defines it (the "before" side of an A/B
    probe), imported by importlib without registering it (the current class holds the name).

    A developer's own checkout, named on the probe's command line, is run like any import; probes
    never take it from a config or a data file.
    """
    import importlib.util

    import cliper.models.registry as registry

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SystemExit(f"no such model file: {path}")
    real = registry.register
    registry.register = lambda cls: cls  # the file's ``from cliper.models.registry import register`` binds this
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        registry.register = real
    return getattr(mod, class_name)

