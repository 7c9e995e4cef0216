"""The ``cliper`` console script: composes the stage apps (``cli/*_cmds.py``) into one Typer app."""

from __future__ import annotations

import logging
import sys

import typer

from cliper.cli import data_cmds, demo_cmds, experiment_cmds, extract_cmds, serve_cmds, train_cmds
from cliper.errors import CliperError

app = typer.Typer(
    name="cliper",
    help="CLIP-enhanced multimodal recommendation: features, fusion, recommenders, experiments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# Composed one way: each stage module owns a Typer app of its commands and never imports this one.
for _stage in (train_cmds, demo_cmds, data_cmds, extract_cmds, experiment_cmds, serve_cmds):
    app.add_typer(_stage.app)


def main() -> None:
    """Entry point that turns user errors into one clear line and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    from cliper.runtime import keep_freed_memory, set_threads

    keep_freed_memory()
    set_threads(None)
    try:
        rv = app(standalone_mode=False)
    except CliperError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished work is kept; rerun the same command (with --resume) to continue", err=True)
        sys.exit(130)
    except Exception as exc:
        # typer bundles its own click: recognise its usage errors and exits by their interface
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, (typer.Exit, typer.Abort)) or type(exc).__name__ in ("Exit", "Abort"):
            sys.exit(getattr(exc, "exit_code", 1))
        raise
    sys.exit(rv if isinstance(rv, int) else 0)
