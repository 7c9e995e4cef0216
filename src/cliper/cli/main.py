"""The ``cliper`` console script: composes the stage apps (``cli/*_cmds.py``) into one Typer app."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys

import typer
from typer.core import TyperGroup

from cliper.cli import data_cmds, demo_cmds, experiment_cmds, extract_cmds, serve_cmds, train_cmds
from cliper.errors import FILE_ERRORS, CliperError, explain

INTERRUPTED = "interrupted: finished work is kept; rerun the same command (with --resume) to continue"


class _Escaped(Exception):
    """Carries an exception past typer, which turns Ctrl-C into a silent exit 130 and EOFError into exit 1."""

    def __init__(self, original: BaseException):
        super().__init__(repr(original))
        self.original = original


class _Group(TyperGroup):
    """The root group: lets KeyboardInterrupt and EOFError reach :func:`main` unchanged."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, EOFError) as exc:
            raise _Escaped(exc) from exc


app = typer.Typer(
    cls=_Group,
    name="cliper",
    help="CLIP-enhanced multimodal recommendation: features, fusion, recommenders, experiments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


QUIET_HELP = "Quiet: no progress bars, warnings and errors only."


def _quiet(flag: bool) -> None:
    if flag:
        logging.getLogger().setLevel(logging.WARNING)
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads its defaults from TQDM_* variables


def with_quiet(fn):
    """``fn`` as a command that takes ``-q/--quiet``: added where it lacks one, honoured where it has one."""
    sig = inspect.signature(fn)
    if "quiet" in sig.parameters:

        @functools.wraps(fn)
        def honoured(*args, **kwargs):
            _quiet(bool(kwargs.get("quiet")))
            return fn(*args, **kwargs)

        return honoured

    @functools.wraps(fn)
    def added(*args, quiet: bool = False, **kwargs):
        _quiet(quiet)
        return fn(*args, **kwargs)

    option = inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                               default=typer.Option(False, "--quiet", "-q", help=QUIET_HELP))
    added.__signature__ = sig.replace(parameters=[*sig.parameters.values(), option])
    added.__annotations__ = {**fn.__annotations__, "quiet": bool}
    return added


def _every_command_takes_quiet(stage: typer.Typer) -> None:
    for command in stage.registered_commands:
        command.callback = with_quiet(command.callback)
    for group in stage.registered_groups:
        _every_command_takes_quiet(group.typer_instance)


# Composed one way: each stage module owns a Typer app of its commands and never imports this one.
for _stage in (train_cmds, demo_cmds, data_cmds, extract_cmds, experiment_cmds, serve_cmds):
    _every_command_takes_quiet(_stage.app)
    app.add_typer(_stage.app)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


def main() -> None:
    """Entry point: every user error, bad file and interrupt becomes one line on stderr.

    User errors (:class:`CliperError`, bad options, unreadable/damaged files, full or
    read-only disks, out of memory) exit 2; Ctrl-C exits 130. Readers raise DataError
    naming the file where they can; the OS/decode mapping here is the safety net.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    from cliper.runtime import set_threads

    # the allocator is set per run by train_run (runtime.freed_memory_cap_mib / keep_freed_memory), not here
    try:
        set_threads(None)  # threads / $CLIPER_THREADS / the default rule (docs/training.md#threads)
        rv = app(standalone_mode=False)
    except _Escaped as wrapped:
        exc = wrapped.original
        if isinstance(exc, KeyboardInterrupt):
            typer.echo(INTERRUPTED, err=True)
            sys.exit(130)
        _fail(explain(exc))
    except KeyboardInterrupt:
        typer.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except CliperError as exc:
        _fail(str(exc))
    except FILE_ERRORS as exc:
        _fail(explain(exc))
    except Exception as exc:
        # typer bundles its own click: recognise its usage errors and exits by their interface
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()
            sys.exit(exc.exit_code)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _fail(exc.format_message() + hint, 2)
        if isinstance(exc, (typer.Exit, typer.Abort)) or type(exc).__name__ in ("Exit", "Abort"):
            sys.exit(getattr(exc, "exit_code", 1))
        raise
    if rv == 130:  # typer's own Ctrl-C handling (outside a command) returns 130
        typer.echo(INTERRUPTED, err=True)
    sys.exit(rv if isinstance(rv, int) else 0)
