"""``cliper compare``, ``cliper ablate``, ``cliper analyze views``, ``cliper runs summary|plot``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cliper.cli import engine_opts
from cliper.errors import CliperError

# This stage's commands; cliper.cli.main composes them into the one console script.
app = typer.Typer()

DATASET_HELP = "Dataset as NAME=PATH (folder with one *.inter file, or the file); repeatable. A bare PATH is named after its folder."
STORE_HELP = "CLIPER feature store as NAME=DIR (or DIR for every dataset); repeatable."
IMAGE_HELP = "Vanilla MMRec image_feat.npy as NAME=FILE (or FILE). Without --image/--text, vanilla = the store's global view only."
TEXT_HELP = "Vanilla MMRec text_feat.npy as NAME=FILE (or FILE)."
MINILM_HELP = ("Text-only all-MiniLM-L6-v2 feature store as NAME=DIR (or DIR): adds the paper's MiniLM-text arm "
               "(its text, the --store's image vector). Make it with: cliper extract --encoder all-MiniLM-L6-v2 "
               "--views mmrec-text ...")
SEEDS_HELP = "Comma-separated seeds, e.g. 0,1,2 (default: the spec's, else 0)."
GRID_HELP = "Grid axis, e.g. -g 'model.reg_weight=[1e-4,1e-3]' (repeatable); the winner is chosen on VALIDATION."
OVERRIDE_HELP = "Config override applied to every run, e.g. -o train.patience=10 (repeatable)."
SPEC_HELP = ("Experiment YAML (datasets, backbones, featuresets, seeds, grid, overrides), or a packaged paper "
             "experiment: paper:table2, paper:rq2-views, paper:rq2-fusion, paper:rq3-dim, paper:rq3-tau, "
             "paper:encoders. Options given here win.")


def _spec(spec: Optional[Path], dataset, store, image, text, backbone, seeds, grid, override, config, epochs, search,
          minilm=()):
    from cliper.experiments.spec import load_spec, spec_from_options

    base = load_spec(spec) if spec else None
    return spec_from_options(base, datasets=dataset, stores=store, vanilla_images=image, vanilla_texts=text,
                             minilm_stores=minilm, backbones=backbone, seeds=seeds, grid=grid, overrides=override,
                             configs=[str(c) for c in config], epochs=epochs, search=search)


@app.command()
def compare(
    output: Path = typer.Option(..., "--output", help="Experiment folder: runs/, compare.md/.csv/.png, results.csv, experiment.json."),
    spec: Optional[Path] = typer.Option(None, "--spec", help=SPEC_HELP),
    dataset: list[str] = typer.Option([], "--dataset", "-d", help=DATASET_HELP),
    store: list[str] = typer.Option([], "--store", help=STORE_HELP),
    image: list[str] = typer.Option([], "--image", help=IMAGE_HELP),
    text: list[str] = typer.Option([], "--text", help=TEXT_HELP),
    minilm: list[str] = typer.Option([], "--minilm", help=MINILM_HELP),
    backbone: list[str] = typer.Option([], "--backbone", "-b", help="Backbone(s), repeatable or comma-separated: vbpr, mmgcn, grcn, dualgnn, lattice, slmrec, bm3, freedom, mgcn, lgmrec, dragon, smore, ..."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help=SEEDS_HELP),
    grid: list[str] = typer.Option([], "--grid", "-g", help=GRID_HELP),
    search: bool = typer.Option(False, "--search", help="Also search the grid each model's packaged config declares."),
    override: list[str] = typer.Option([], "--override", "-o", help=OVERRIDE_HELP),
    config: list[Path] = typer.Option([], "--config", "-c", help="YAML config layer(s) for every run."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training budget (train.epochs) for every run."),
    report_only: bool = typer.Option(False, "--report-only", help="Train nothing; rebuild the tables from the finished runs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch progress bars."),
    engine: str = engine_opts.engine_option(),
    ray_address: Optional[str] = engine_opts.address_option(),
    workers: Optional[int] = engine_opts.workers_option(),
    cpus_per_worker: Optional[float] = engine_opts.cpus_option(),
    gpus_per_worker: Optional[float] = engine_opts.gpus_option(),
) -> None:
    """Vanilla vs CLIPER features for every backbone and dataset, at the same embedding size and budget.

    Runs land in OUTPUT/runs/<dataset>/<backbone>/<featureset>/seed<k>/ (finished ones are
    skipped when the command is re-run). Hyperparameters from a grid are chosen on
    validation only. Writes the paper's Table 2 layout with mean ± std over seeds,
    relative improvement and a Wilcoxon signed-rank test paired over users.

    Example: cliper compare --spec paper:table2 --output experiments/table2
    """
    from cliper.experiments.compare import run_compare

    s = _spec(spec, dataset, store, image, text, backbone, seeds, grid, override, config, epochs, search, minilm)
    with engine_opts.make_engine(engine, ray_address, workers, cpus_per_worker, gpus_per_worker) as eng:
        files = run_compare(s, output, progress=not quiet, train=not report_only, engine=eng)
    if "arms" in files:
        typer.echo(files["arms"].read_text(encoding="utf-8"))
    typer.echo(files["md"].read_text(encoding="utf-8"))
    typer.echo("written: " + ", ".join(str(p) for p in files.values()))


@app.command()
def ablate(
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="views, fusion, tau or dim (default: the spec's ablation.kind)."),
    output: Path = typer.Option(..., "--output", help="Experiment folder: runs/, ablation_<kind>.md/.csv/.png."),
    values: Optional[str] = typer.Option(None, "--values", help="Comma-separated values to sweep (fusion names, taus, sizes) or, for views, the views to drop."),
    spec: Optional[Path] = typer.Option(None, "--spec", help=SPEC_HELP),
    dataset: list[str] = typer.Option([], "--dataset", "-d", help=DATASET_HELP),
    store: list[str] = typer.Option([], "--store", help=STORE_HELP),
    backbone: list[str] = typer.Option([], "--backbone", "-b", help="Backbone(s); default freedom (the paper's RQ2/RQ3 backbone)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help=SEEDS_HELP),
    grid: list[str] = typer.Option([], "--grid", "-g", help=GRID_HELP),
    override: list[str] = typer.Option([], "--override", "-o", help=OVERRIDE_HELP),
    config: list[Path] = typer.Option([], "--config", "-c", help="YAML config layer(s) for every run."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training budget (train.epochs) for every run."),
    report_only: bool = typer.Option(False, "--report-only", help="Train nothing; rebuild the table from the finished runs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch progress bars."),
    engine: str = engine_opts.engine_option(),
    ray_address: Optional[str] = engine_opts.address_option(),
    workers: Optional[int] = engine_opts.workers_option(),
    cpus_per_worker: Optional[float] = engine_opts.cpus_option(),
    gpus_per_worker: Optional[float] = engine_opts.gpus_option(),
) -> None:
    """Ablations on the CLIPER features: drop views, swap the fusion, sweep tau or the embedding size.

    views: all views, each view dropped, the global view only. fusion: sum, concat, mlp, sa,
    attention. tau: 0.05, 0.1, 0.2, 0.5, 0.7. dim: 32, 64, 128, 256. Writes a table (Markdown
    + CSV) and a PNG; the variant best on VALIDATION is marked.

    Example: cliper ablate --kind fusion -d baby=data/amazon-baby --store baby=features/baby --output experiments/fusion
    """
    from cliper.experiments.ablation import parse_values, run_ablation

    s = _spec(spec, dataset, store, [], [], backbone, seeds, grid, override, config, epochs, False)
    swept = parse_values(kind, values) if kind and values else None
    if kind is None:
        if s.ablation is None:
            raise CliperError("no ablation kind: pass --kind views|fusion|tau|dim or a --spec with an ablation: entry")
        kind = s.ablation.kind
        swept = parse_values(kind, values) if values else s.ablation.values
    with engine_opts.make_engine(engine, ray_address, workers, cpus_per_worker, gpus_per_worker) as eng:
        files = run_ablation(s, kind, output, values=swept, progress=not quiet, train=not report_only, engine=eng)
    typer.echo(files["md"].read_text(encoding="utf-8"))
    typer.echo("written: " + ", ".join(str(p) for p in files.values()))


analyze_app = typer.Typer(help="Analyses of feature stores (view importance, attention weights).", no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")


@analyze_app.command("views")
def analyze_views(
    store: Path = typer.Option(..., "--store", help="Feature store folder (from `cliper extract`)."),
    output: Path = typer.Option(..., "--output", help="Folder for view_importance.*, attention_weights.*, summary.json."),
    tau: float = typer.Option(0.1, "--tau", help="Temperature of the SA weights softmax(sim / tau)."),
    views: Optional[str] = typer.Option(None, "--views", help="Comma-separated subset of views (default: all)."),
) -> None:
    """Rank the views of every item by view-image similarity; heatmap of rank counts (paper Figure 5).

    Items without a real image are left out. Rank 1 = most similar; the weighted sum per
    view is sum(rank * count), smaller = more important. Also the distribution of the SA
    attention weights per view.

    Example: cliper analyze views --store features/baby --output experiments/views-baby
    """
    from cliper.experiments.tables import text_table
    from cliper.experiments.view_importance import analyze_store

    chosen = [v.strip() for v in views.split(",") if v.strip()] if views else None
    doc = analyze_store(store, output, tau=tau, views=chosen)
    rows = [{"view": v, **{f"rank_{r + 1}": c for r, c in enumerate(counts)}, "weighted_sum": w}
            for v, counts, w in zip(doc["views"], doc["counts"], doc["weighted_sum"])]
    typer.echo(text_table(rows))
    typer.echo(f"{doc['n_items']} items ranked ({doc['n_excluded']} without an image left out); "
               f"order: {', '.join(doc['order'])}")
    typer.echo(f"written to {output}")


runs_app = typer.Typer(help="Run folders: list them with their results; plot their training curves.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


@runs_app.command("summary")
def runs_summary(
    root: Path = typer.Argument(..., help="A folder to search for finished runs (metrics.json)."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the table to this CSV file."),
    all_points: bool = typer.Option(False, "--all", help="Also list every grid point (not only the grid's validation winner)."),
) -> None:
    """List every finished run under ROOT: model, dataset, features, seed, best epoch, valid and test scores.

    Example: cliper runs summary experiments/table2 --csv table2-runs.csv
    """
    from cliper.experiments.collect import find_runs
    from cliper.experiments.tables import summary_rows, text_table, write_csv

    rows = summary_rows(find_runs(root, include_grid_points=all_points), Path(root))
    typer.echo(text_table(rows))
    if csv:
        write_csv(rows, csv)
        typer.echo(f"written: {csv}")


@runs_app.command("plot")
def runs_plot(
    run: Path = typer.Argument(..., help="A run folder (with epochs.jsonl) or a grid folder."),
    output: Optional[Path] = typer.Option(None, "--output", help="PNG path (default RUN/curves.png)."),
) -> None:
    """Training loss and validation metrics per epoch, as a PNG.

    Example: cliper runs plot runs/lightgcn-baby
    """
    from cliper.experiments.plots import plot_run_curves, training_curves

    if not run.exists():
        raise CliperError(f"{run} does not exist")
    made = [training_curves(run, output)] if output else plot_run_curves(run)
    typer.echo("written: " + ", ".join(str(p) for p in made))


@app.command()
def quickstart(
    output: Path = typer.Option(Path("quickstart"), "--output", help="Folder for every stage and the report."),
    items: int = typer.Option(800, "--items", help="Demo catalogue items."),
    users: int = typer.Option(1200, "--users", help="Demo catalogue users."),
    seed: int = typer.Option(0, "--seed"),
    clip_epochs: int = typer.Option(20, "--clip-epochs", help="Epochs of contrastive CLIP training on the catalogue."),
    backbones: str = typer.Option("vbpr,freedom", "--backbones", "-b", help="Comma-separated multimodal backbones."),
    epochs: int = typer.Option(100, "--epochs", help="Maximum recommender epochs (early stopping on valid Recall@20)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Offline end-to-end demo on a SYNTHETIC catalogue: data -> CLIP -> views -> backbones -> report.

    Generates the demo catalogue, trains a small CLIP on it, extracts multi-view features
    (and all-MiniLM-L6-v2 text features with the minilm extra), trains each backbone with
    MiniLM text, vanilla (single CLIP global view) and CLIPER (all views, SA fusion) text and
    the same image vector, and writes a report folder, with how much text each encoder saw.
    Re-running the same command reuses finished stages.

    Example: cliper quickstart --output quickstart
    """
    from cliper.experiments.quickstart import QuickstartOptions, run_quickstart

    opts = QuickstartOptions(n_items=items, n_users=users, seed=seed, clip_epochs=clip_epochs,
                             backbones=tuple(b.strip().lower() for b in backbones.split(",") if b.strip()),
                             epochs=epochs)
    report = run_quickstart(output, opts, progress=not quiet)
    typer.echo(f"report: {report / 'summary.md'}")
    import json

    serving = json.loads((report / "report.json").read_text(encoding="utf-8"))["serving"]
    typer.echo(f"serve the CLIPER run ({serving['run']}): {serving['command']}")
