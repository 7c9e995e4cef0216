"""``cliper train`` and ``cliper evaluate``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional

import typer

from cliper.cli import engine_opts
from cliper.errors import CliperError

# This stage's commands; cliper.cli.main composes them into the one console script.
app = typer.Typer()

OVERRIDE_HELP = "Override any config key, e.g. -o train.learning_rate=1e-3 -o model.n_layers=3 (repeatable)."


@app.command()
def train(
    dataset: Path = typer.Option(..., "--dataset", "-d", help="Folder with one *.inter file (MMRec format), or the file."),
    model: str = typer.Option(..., "--model", "-m", help="Model name: bpr, lightgcn, vbpr, mmgcn, grcn, dualgnn, lattice, slmrec, bm3, freedom, mgcn, lgmrec, dragon, smore, or an installed plugin's."),
    output: Path = typer.Option(..., "--output", help="Run folder to create (config.yaml, epochs.jsonl, checkpoints, metrics.json)."),
    config: list[Path] = typer.Option([], "--config", "-c", help="YAML config file(s), applied in order over the package/dataset/model defaults."),
    override: list[str] = typer.Option([], "--override", "-o", help=OVERRIDE_HELP),
    grid: list[str] = typer.Option([], "--grid", "-g", help="Grid axis, e.g. -g 'model.reg_weight=[1e-4,1e-3]'; the winner is chosen on validation."),
    search: bool = typer.Option(False, "--search", help="Also search the grid the model's packaged config declares."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --output from its checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    engine: str = engine_opts.engine_option(),
    ray_address: Optional[str] = engine_opts.address_option(),
    workers: Optional[int] = engine_opts.workers_option(),
    cpus_per_worker: Optional[float] = engine_opts.cpus_option(),
    gpus_per_worker: Optional[float] = engine_opts.gpus_option(),
) -> None:
    """Train a recommender; test metrics are reported at the best validation epoch.

    Early stopping watches eval.valid_metric (default recall@20, patience 21, as MMRec). With a grid
    (-g, --search, or a grid: section in a config file), every point is trained and the
    winner is chosen by its VALIDATION score; test scores are never used for selection.
    With --engine ray every grid point is a Ray task (--cpus-per-worker sets its threads).

    Example: cliper train -d ../shared/data/amazon-baby -m lightgcn --output runs/lightgcn-baby
    """
    from cliper.config.loader import load_config, parse_override
    from cliper.training.runner import train_grid, train_run

    overrides = [f"dataset.path={dataset}", f"model.name={model}", *override]
    cfg = load_config(files=config, overrides=overrides, search=search)
    if grid:
        extra = dict(cfg.grid)
        for g in grid:
            path, values = parse_override(g)
            if not isinstance(values, list) or not values:
                raise CliperError(f"grid axis {g!r} needs a non-empty list of values, e.g. key=[a,b]")
            extra[".".join(path)] = values
        cfg = cfg.model_copy(update={"grid": extra})
    eng = engine_opts.make_engine(engine, ray_address, workers, cpus_per_worker, gpus_per_worker)
    if cfg.grid:
        with eng:
            metrics = train_grid(cfg, output, resume=resume, progress=not quiet, engine=eng)
    elif eng.name != "local":
        raise CliperError("--engine ray runs grids (-g, --search); a single run trains here")
    else:
        metrics = train_run(cfg, output, resume=resume, progress=not quiet)
    _print_summary(metrics, cfg.eval.valid_metric, output)


def _print_summary(metrics: dict, key: str, output: Path) -> None:
    name = key.split("@")[0]
    ks = sorted({int(k.split("@")[1]) for k in metrics["test"] if k.startswith(name)})
    line = "  ".join(
        f"{m}@{k} {metrics['test'][f'{m}@{k}']:.4f}" for m in ("recall", "ndcg") for k in ks if f"{m}@{k}" in metrics["test"]
    )
    typer.echo(f"best epoch {metrics['best_epoch']} (valid {key} {metrics['valid'].get(key, float('nan')):.4f})")
    typer.echo(f"test: {line}")
    typer.echo(f"metrics: {output / 'metrics.json'}")


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="A run folder written by `cliper train` (a grid folder uses its winner)."),
    split: str = typer.Option("test", "--split", help="valid or test."),
    save_topk: Optional[int] = typer.Option(None, "--save-topk", help="Write every evaluated user's top-K items to topk_<split>.csv (user_id,rank,item_id)."),
    weights: str = typer.Option("best", "--weights", help="best (best valid epoch) or last (latest checkpoint)."),
) -> None:
    """Re-evaluate a trained run with full ranking (train items masked) and print its metrics.

    Example: cliper evaluate runs/lightgcn-baby --split test --save-topk 20
    """
    from cliper.training.runner import load_trained, make_evaluator

    if split not in ("valid", "test"):
        raise CliperError("--split must be valid or test")
    if save_topk is not None and save_topk < 1:
        raise CliperError(f"--save-topk must be a positive number of items, got {save_topk}")
    if weights not in ("best", "last"):
        raise CliperError("--weights must be best or last")
    cfg, data, model = load_trained(run, which=weights)
    if save_topk is not None and save_topk > data.n_items:
        raise CliperError(f"--save-topk {save_topk} exceeds the dataset's {data.n_items} items")
    evaluator = make_evaluator(cfg, data, next(model.parameters()).device)
    metrics = evaluator.evaluate(model, split)
    typer.echo(json.dumps({"split": split, **metrics}, indent=2))
    if save_topk:
        from cliper.errors import writing

        users, top = evaluator.top_items(model, split, save_topk)
        out = Path(run) / f"topk_{split}.csv"
        with writing(out), open(out, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["user_id", "rank", "item_id"])
            for u, items in zip(users.tolist(), top.tolist()):
                for r, i in enumerate(items, 1):
                    w.writerow([u, r, i])
        typer.echo(f"top-{save_topk} lists: {out}")
