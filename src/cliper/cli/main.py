"""The ``cliper`` console script: one Typer app; each stage adds its commands here."""

from __future__ import annotations

import logging
import sys

import typer

from cliper.errors import CliperError

app = typer.Typer(
    name="cliper",
    help="CLIP-enhanced multimodal recommendation: features, fusion, recommenders, experiments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Imported here so `cliper --help` lists every stage; each module adds its commands to `app`.
    from cliper.cli import train_cmds  # noqa: F401
    from cliper.cli import data_cmds  # noqa: F401
    from cliper.cli import extract_cmds  # noqa: F401


_register()


def main() -> None:
    """Entry point that turns user errors into one clear line and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        app(standalone_mode=False)
    except CliperError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors come through here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise
