"""User-facing errors: the CLI prints their message as one line, never a traceback.

:func:`explain` is the one place that turns an OS, decode or decompression error into a
short sentence; :func:`reading` / :func:`writing` wrap a file access so that such an
error becomes a :class:`DataError` naming the file (``cli.main`` maps any that escape).
"""

from __future__ import annotations

import errno
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
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


# OS errors users meet, with what they usually mean
_ERRNO_HINTS = {
    errno.ENOSPC: "no space left on device (the disk is full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EEXIST: "already exists",
    errno.EFBIG: "file too large",
    errno.EIO: "input/output error (damaged disk or network file system)",
}

# errors that mean "the bytes of this file are not what they should be"
DECODE_ERRORS = (UnicodeDecodeError, EOFError, zlib.error)
FILE_ERRORS = (OSError, MemoryError) + DECODE_ERRORS


def explain(exc: BaseException) -> str:
    """One line saying what went wrong, without the exception's type or a traceback."""
    if isinstance(exc, CliperError):
        return str(exc)
    if isinstance(exc, UnicodeDecodeError):
        byte = f" (byte 0x{exc.object[exc.start]:02x})" if exc.start < len(exc.object) else ""
        return f"not UTF-8 text{byte}; save the file as UTF-8"
    if isinstance(exc, EOFError) or (isinstance(exc, OSError) and type(exc).__name__ == "BadGzipFile"):
        return f"compressed file is truncated or damaged ({exc or 'ends early'})"
    if isinstance(exc, zlib.error):
        return f"compressed data is damaged ({exc})"
    if isinstance(exc, MemoryError):
        return "out of memory (the input is larger than this machine can hold, or is malformed)"
    if isinstance(exc, OSError):
        what = _ERRNO_HINTS.get(exc.errno or -1) or (exc.strerror or str(exc) or type(exc).__name__)
        names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
        return f"{' -> '.join(names)}: {what}" if names else what
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _reason(exc: BaseException) -> str:
    """:func:`explain` without the file names (the DataError prefix names the file)."""
    if isinstance(exc, OSError) and type(exc).__name__ != "BadGzipFile":
        return _ERRNO_HINTS.get(exc.errno or -1) or (exc.strerror or str(exc) or type(exc).__name__)
    return explain(exc)


@contextmanager
def reading(path: str | Path, line: int | None = None) -> Iterator[None]:
    """Turn OS/decode/decompression errors raised while reading ``path`` into a :class:`DataError`."""
    try:
        yield
    except CliperError:
        raise
    except FILE_ERRORS as exc:
        if isinstance(exc, UnicodeDecodeError) and line is None:
            line = first_non_utf8_line(path)
        raise DataError(f"cannot read: {_reason(exc)}", path, line) from None


def first_non_utf8_line(path: str | Path) -> int | None:
    """1-based line holding the first byte sequence that is not UTF-8 (``.gz`` read through), or None.

    Decoders report offsets within their read buffer, not the file; this finds the line.
    """
    import gzip

    try:
        opener = gzip.open if str(path).lower().endswith(".gz") else open
        with opener(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return n
    except Exception:  # the file itself is unreadable: the caller reports that
        return None
    return None


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn OS errors raised while writing ``path`` (disk full, read-only, no permission) into a DataError."""
    try:
        yield
    except CliperError:
        raise
    except (OSError, MemoryError) as exc:
        raise DataError(f"cannot write: {_reason(exc)}", path) from None
