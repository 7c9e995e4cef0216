"""Every command, however it was added, takes -q/--quiet and shows an example in its --help."""

import pytest
import typer
from typer.testing import CliRunner

from cliper.cli.main import app


def _leaves(group, prefix: tuple[str, ...] = ()):
    # typer ships its own click: walk groups by their interface, not by class
    for name, cmd in sorted(group.commands.items()):
        if hasattr(cmd, "commands"):
            yield from _leaves(cmd, prefix + (name,))
        else:
            yield prefix + (name,)


COMMANDS = list(_leaves(typer.main.get_command(app)))


def test_the_walk_finds_every_stage():
    names = {" ".join(c) for c in COMMANDS}
    assert {"train", "evaluate", "extract", "data build", "data stats", "compare", "ablate", "serve",
            "export-serving", "quickstart", "runs summary", "analyze views"} <= names


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_takes_quiet_and_shows_an_example(command):
    res = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "--quiet" in res.output and "-q" in res.output
    assert f"Example: cliper {' '.join(command)}" in res.output
