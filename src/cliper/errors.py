"""User-facing errors: the CLI prints their message as one line, never a traceback."""

from __future__ import annotations

from pathlib import Path


class CliperError(Exception):
    """An error caused by the user's input or configuration, with a clear message."""


class DataError(CliperError):
    """A problem in an input file, naming the file and (where known) the line."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else Path(path)
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(where + message)


class ConfigError(CliperError):
    """An invalid configuration: unknown key, bad value, or a missing requirement."""
