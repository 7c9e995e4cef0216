"""``cliper export-serving`` and ``cliper serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cliper.errors import CliperError

# This stage's commands; cliper.cli.main composes them into the one console script.
app = typer.Typer()

INDEX_KINDS = ("exact", "ivf", "hnsw")


@app.command("export-serving")
def export_serving(
    run: Path = typer.Argument(..., help="A run folder written by `cliper train` (a grid folder uses its winner)."),
    output: Path = typer.Option(..., "--output", help="Bundle folder to write (atomically)."),
    index: str = typer.Option("exact", "--index", help="exact, or a faiss index: ivf or hnsw (recall@K measured now)."),
    recall_k: int = typer.Option(20, "--recall-k", help="K of the recall measured for a faiss index."),
    target_recall: float = typer.Option(0.95, "--target-recall", help="Search effort grows until recall@K reaches this."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="Catalogue for item metadata (default: the feature store's, or meta* beside the data)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of <item id>.jpg images for thumbnails (default: images/ beside the data)."),
    no_encoder: bool = typer.Option(False, "--no-encoder", help="Leave the CLIP encoder out (no text search)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle."),
) -> None:
    """Export a trained run as a serving bundle: embeddings, raw ids, seen items, metadata, CLIP, manifest.

    Example: cliper export-serving runs/freedom-baby --output bundles/freedom-baby
    """
    from cliper.serving.export import export_run

    if index not in INDEX_KINDS:
        raise CliperError(f"--index must be one of {', '.join(INDEX_KINDS)}")
    if recall_k < 1 or not 0 < target_recall <= 1:
        raise CliperError("--recall-k must be >= 1 and --target-recall in (0, 1]")
    out = export_run(run, output, index=index, catalog=catalog, images=images, with_encoder=not no_encoder,
                     overwrite=overwrite, index_options={"k": recall_k, "target_recall": target_recall})
    typer.echo(f"bundle: {out}")
    typer.echo(f"serve it: cliper serve {out}")


@app.command()
def serve(
    bundle: Path = typer.Argument(..., help="A bundle folder written by `cliper export-serving`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    index: str = typer.Option("bundle", "--index", help="bundle (the bundle's own index) or exact."),
    no_search: bool = typer.Option(False, "--no-search", help="Do not load the CLIP text tower (faster start, no /v1/search)."),
    workers: int = typer.Option(1, "--workers", help="uvicorn worker processes (each loads the bundle; metrics are per worker)."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve a bundle over HTTP: JSON API under /v1, docs at /docs, a web page at /.

    Example: cliper serve bundles/freedom-baby --host 127.0.0.1 --port 8000
    """
    from cliper.extras import require

    for module in ("fastapi", "uvicorn", "prometheus_client"):
        require(module, "serve", "cliper serve")
    import uvicorn

    from cliper.serving.app import create_app
    from cliper.serving.bundle import BundleError

    if not 0 < port < 65536:
        raise CliperError("--port must be in 1..65535")
    if not 1 <= workers <= 64:
        raise CliperError("--workers must be in 1..64")
    try:
        api = create_app(bundle, index=index, load_encoder=not no_search)  # verified here, in the parent, first
    except BundleError:
        raise
    except ValueError as exc:
        raise CliperError(str(exc)) from None
    # h11, not httptools even when installed: h11 lets a 1 MB request line reach the app, which answers a
    # JSON 413; httptools answers such a request with a plain-text 400 before the app sees it.
    options = dict(host=host, port=port, log_level=log_level, access_log=False, http="h11",
                   h11_max_incomplete_event_size=2 * 1024 * 1024, limit_concurrency=1024, timeout_keep_alive=30)
    typer.echo(f"serving {bundle} on http://{host}:{port}/ (API docs: /docs)")
    if workers == 1:
        uvicorn.run(api, **options)
        return
    import os

    from cliper.serving.app import ENV_BUNDLE, ENV_INDEX, ENV_SEARCH

    del api
    os.environ.update({ENV_BUNDLE: str(Path(bundle).resolve()), ENV_INDEX: index, ENV_SEARCH: "0" if no_search else "1"})
    uvicorn.run("cliper.serving.app:app_from_env", factory=True, workers=workers, **options)
