"""Readers for raw interaction logs (CSV/TSV, JSON Lines, Parquet) before any filtering.

Raw logs come in many shapes (Amazon review dumps, exported tables), so the reader
only needs to know which columns hold the user, the item and, optionally, a timestamp
and a rating. Every row keeps the line (or row) it came from, so that later checks
can point at the exact place in the file. Ids stay strings: they are remapped to
contiguous integers only after filtering (see :mod:`cliper.data.build`).
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cliper.errors import ConfigError, DataError, reading

log = logging.getLogger(__name__)

FORMATS = ("csv", "jsonl", "parquet")

# Column names tried, in order, when the caller does not name a column.
ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user_id", "userID", "user", "reviewerID", "uid"),
    "item": ("item_id", "itemID", "item", "asin", "parent_asin", "iid"),
    "timestamp": ("timestamp", "unixReviewTime", "time", "ts"),
    "rating": ("rating", "overall", "score"),
}


@dataclass(frozen=True)
class ColumnMap:
    """Which raw columns hold what. ``None`` means: use the first present alias in :data:`ALIASES`
    (required for user and item; timestamp and rating are used only when found)."""

    user: str | None = None
    item: str | None = None
    timestamp: str | None = None
    rating: str | None = None

    def resolve(self, available: Sequence[str], path: Path, line: int | None) -> ColumnMap:
        """Fill unset fields from the aliases; fail naming what is missing and what exists."""
        have = list(available)
        out = {}
        for role in ("user", "item", "timestamp", "rating"):
            wanted = getattr(self, role)
            if wanted is not None:
                if wanted not in have:
                    raise DataError(
                        f"{role} column {wanted!r} not found; columns are: {', '.join(map(str, have)) or '(none)'}",
                        path,
                        line,
                    )
                out[role] = wanted
                continue
            found = next((a for a in ALIASES[role] if a in have), None)
            if found is None and role in ("user", "item"):
                raise DataError(
                    f"no {role} column: tried {', '.join(ALIASES[role])}; columns are: "
                    f"{', '.join(map(str, have)) or '(none)'} (name it with --{role}-col)",
                    path,
                    line,
                )
            out[role] = found
        return ColumnMap(**out)


@dataclass
class RawInteractions:
    """Raw rows: ``frame`` has ``user``/``item`` (str), optional ``timestamp`` (int64 or float64 seconds)
    and ``rating`` (float64), plus ``line`` (source line, or 1-based row for Parquet)."""

    frame: pd.DataFrame
    path: Path
    fmt: str
    columns: ColumnMap
    rows_read: int
    rows_below_rating: int = 0

    @property
    def has_timestamp(self) -> bool:
        return "timestamp" in self.frame.columns

    @property
    def has_rating(self) -> bool:
        return "rating" in self.frame.columns


def infer_format(path: str | Path) -> str:
    """``csv`` for .csv/.tsv/.txt, ``jsonl`` for .jsonl/.json/.ndjson, ``parquet`` for .parquet/.pq
    (a trailing .gz is ignored)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    if suffix in ("csv", "tsv", "txt"):
        return "csv"
    if suffix in ("jsonl", "json", "ndjson"):
        return "jsonl"
    if suffix in ("parquet", "pq"):
        return "parquet"
    raise ConfigError(f"cannot tell the format of {path} from its name; pass --format csv|jsonl|parquet")


def _where(fmt: str, line: int) -> tuple[str, int | None]:
    """(message prefix, DataError line) for a source position: Parquet has rows, not lines."""
    return (f"row {line}: ", None) if fmt == "parquet" else ("", line)


def _fail(raw_fmt: str, path: Path, line: int, message: str) -> DataError:
    prefix, ln = _where(raw_fmt, line)
    return DataError(prefix + message, path, ln)


# ---------------------------------------------------------------- format readers


def _read_csv(path: Path, columns: ColumnMap, sep: str | None) -> tuple[pd.DataFrame, ColumnMap]:
    if sep is None:
        base = path.name.lower().removesuffix(".gz")
        sep = "\t" if base.endswith((".tsv", ".txt")) else ","
    try:
        with reading(path, 1):
            first = pd.read_csv(path, sep=sep, nrows=1, header=None, dtype=str, keep_default_na=False,
                                compression="infer")
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", path) from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"cannot read as {'TSV' if sep == chr(9) else 'CSV'}: {' '.join(str(exc).split())}",
                        path, 1) from None
    header = [str(c).strip() for c in first.iloc[0]]
    cols = columns.resolve(header, path, 1)
    wanted = {r: getattr(cols, r) for r in ("user", "item", "timestamp", "rating") if getattr(cols, r)}
    twice = sorted({c for c in wanted.values() if header.count(c) > 1})
    if twice:
        raise DataError(f"column {twice[0]!r} appears {header.count(twice[0])} times in the header", path, 1)
    try:
        with reading(path):
            df = pd.read_csv(
                path,
                sep=sep,
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=False,  # keep blank lines so row index -> line number stays exact
                compression="infer",
                engine="c",
            )
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise DataError(f"malformed row: {' '.join(str(exc).split())}", path, int(m.group(1)) if m else None) from None
    if len(df.columns) != len(header):
        raise DataError(f"rows have {len(df.columns)} columns but the header names {len(header)}", path)
    df.columns = header
    df = df[list(dict.fromkeys(wanted.values()))].copy()
    df["line"] = np.arange(2, len(df) + 2, dtype=np.int64)
    used = df[list(dict.fromkeys(wanted.values()))]
    blank = (used.isna() | (used == "")).all(axis=1)  # a blank line reads as "" then NaN
    df = df[~blank.to_numpy()]
    out = pd.DataFrame({role: df[col] for role, col in wanted.items()})
    out["line"] = df["line"].to_numpy()
    return out.reset_index(drop=True), cols


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _read_jsonl(path: Path, columns: ColumnMap, progress: bool) -> tuple[pd.DataFrame, ColumnMap]:
    cols: ColumnMap | None = None
    roles: list[tuple[str, str]] = []
    values: dict[str, list] = {}
    lines: list[int] = []
    lineno = 0
    try:
        with _open_text(path) as fh:
            for lineno, text in enumerate(
                tqdm(fh, desc=f"reading {path.name}", unit=" lines", disable=None if progress else True, mininterval=1.0), 1
            ):
                if not text.strip():
                    continue
                try:
                    rec = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", path, lineno) from None
                except RecursionError:
                    raise DataError("invalid JSON: nested too deeply", path, lineno) from None
                if not isinstance(rec, dict):
                    raise DataError(f"expected one JSON object per line, got {type(rec).__name__}", path, lineno)
                if cols is None:
                    cols = columns.resolve(list(rec), path, lineno)
                    roles = [(r, getattr(cols, r)) for r in ("user", "item", "timestamp", "rating") if getattr(cols, r)]
                    values = {r: [] for r, _ in roles}
                for role, key in roles:
                    try:
                        values[role].append(rec[key])
                    except KeyError:
                        raise DataError(f"missing field {key!r} ({role})", path, lineno) from None
                lines.append(lineno)
    except (OSError, EOFError, UnicodeDecodeError, zlib.error, MemoryError) as exc:
        with reading(path, lineno + 1):  # the line being read when it failed
            raise exc
    if cols is None:
        raise DataError("file holds no JSON records", path)
    out = pd.DataFrame({r: pd.Series(v, dtype=object) for r, v in values.items()})
    out["line"] = np.asarray(lines, dtype=np.int64)
    return out, cols


def _read_parquet(path: Path, columns: ColumnMap) -> tuple[pd.DataFrame, ColumnMap]:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise DataError(f"cannot read as Parquet: {exc}", path) from None
    cols = columns.resolve(names, path, None)
    wanted = {r: getattr(cols, r) for r in ("user", "item", "timestamp", "rating") if getattr(cols, r)}
    try:
        with reading(path):
            df = pd.read_parquet(path, columns=list(dict.fromkeys(wanted.values())))
    except (ValueError, TypeError, RuntimeError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise DataError(f"cannot read as Parquet: {' '.join(str(exc).split())}", path) from None
    out = pd.DataFrame({role: df[col] for role, col in wanted.items()})
    out["line"] = np.arange(1, len(out) + 1, dtype=np.int64)
    return out, cols


# ---------------------------------------------------------------- column normalisation


def _ids_to_str(s: pd.Series, role: str, fmt: str, path: Path, lines: np.ndarray) -> pd.Series:
    """Original ids as stripped strings; integral floats (Parquet/JSON numbers) lose their '.0'."""
    if pd.api.types.is_float_dtype(s.dtype):
        finite = s.notna() & np.isfinite(s.fillna(0))
        if finite.all() and (s == np.floor(s)).all():
            s = s.astype("int64")
    isnull = s.isna().to_numpy()
    out = s.astype(str).str.strip()
    empty = isnull | (out == "").to_numpy(dtype=bool, na_value=True)
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise _fail(fmt, path, int(lines[i]), f"empty {role} id")
    bad = out.str.contains(r"[\t\r\n]", regex=True).to_numpy(dtype=bool, na_value=False)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(fmt, path, int(lines[i]), f"{role} id {out.iloc[i]!r} contains a tab or newline")
    return out


def parse_timestamps(s: pd.Series, fmt: str, path: Path, lines: np.ndarray) -> np.ndarray:
    """Seconds since the epoch: unix numbers as given (int64 when all integral, else float64), or
    ISO-8601 date strings / Parquet datetimes converted to int64 seconds (UTC). One form per column."""
    s = s.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        dt = pd.to_datetime(s, utc=True)
        num_ok = pd.Series(False, index=s.index)
        dt_ok = dt.notna()
    else:
        num = pd.to_numeric(s, errors="coerce")
        num_ok = num.notna() & np.isfinite(num.fillna(0).to_numpy(dtype=np.float64))
        num_ok &= num.abs().fillna(0) < 2**53  # beyond that seconds lose precision (and int64 overflows)
        if num_ok.all():
            arr = num.to_numpy(dtype=np.float64)
            return arr.astype(np.int64) if (arr == np.floor(arr)).all() else arr
        dt = pd.to_datetime(s.where(~num_ok), errors="coerce", utc=True, format="ISO8601")
        dt_ok = dt.notna()
    use_numbers = bool(num_ok.sum() >= dt_ok.sum())
    bad = (~num_ok if use_numbers else ~dt_ok).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        v = s.iloc[i]
        if v is None or (isinstance(v, str) and not v.strip()) or (not isinstance(v, str) and pd.isna(v)):
            what = "missing timestamp"
        elif num_ok.iloc[i] or dt_ok.iloc[i]:
            what = (
                f"timestamp {v!r} does not match the "
                f"{'unix seconds' if use_numbers else 'ISO-8601 dates'} used elsewhere in the column"
            )
        else:
            what = f"bad timestamp {v!r} (expected unix seconds or an ISO-8601 date)"
        raise _fail(fmt, path, int(lines[i]), what)
    return ((dt - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def _parse_ratings(s: pd.Series, fmt: str, path: Path, lines: np.ndarray) -> np.ndarray:
    num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(num)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(fmt, path, int(lines[i]), f"bad rating {s.iloc[i]!r} (expected a number)")
    return num


def read_raw(
    path: str | Path,
    fmt: str | None = None,
    columns: ColumnMap | None = None,
    min_rating: float | None = None,
    sep: str | None = None,
    progress: bool = True,
) -> RawInteractions:
    """Read a raw interaction log and validate it; optionally keep only rows with rating >= ``min_rating``.

    ``progress`` shows a tqdm bar while reading JSON Lines when stderr is a terminal (steps are logged).

    Errors (:class:`~cliper.errors.DataError`) name the file and the line (the 1-based row for
    Parquet): missing columns, empty ids, bad timestamps or ratings, nothing left after the filter.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder, not a raw interaction file", path)
    if not path.is_file():
        raise DataError("raw interaction file not found", path)
    fmt = (fmt or infer_format(path)).lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    columns = columns or ColumnMap()
    log.info("reading %s (%s)", path, fmt)
    if fmt == "csv":
        df, cols = _read_csv(path, columns, sep)
    elif fmt == "jsonl":
        df, cols = _read_jsonl(path, columns, progress)
    else:
        df, cols = _read_parquet(path, columns)
    if len(df) == 0:
        raise DataError("no interactions in file", path)
    lines = df["line"].to_numpy()
    frame = pd.DataFrame(
        {
            "user": _ids_to_str(df["user"], "user", fmt, path, lines).to_numpy(dtype=object),
            "item": _ids_to_str(df["item"], "item", fmt, path, lines).to_numpy(dtype=object),
        }
    )
    if "timestamp" in df.columns:
        frame["timestamp"] = parse_timestamps(df["timestamp"].reset_index(drop=True), fmt, path, lines)
    if "rating" in df.columns:
        frame["rating"] = _parse_ratings(df["rating"].reset_index(drop=True), fmt, path, lines)
    frame["line"] = lines
    rows_read = len(frame)
    below = 0
    if min_rating is not None:
        if "rating" not in frame.columns:
            raise DataError(
                f"--min-rating {min_rating} needs a rating column; tried {', '.join(ALIASES['rating'])} "
                "(name it with --rating-col)",
                path,
            )
        keep = frame["rating"].to_numpy() >= float(min_rating)
        below = int((~keep).sum())
        frame = frame[keep].reset_index(drop=True)
        if len(frame) == 0:
            raise DataError(f"no interactions left after keeping ratings >= {min_rating}", path)
    log.info(
        "read %d rows (user=%r item=%r timestamp=%r rating=%r)%s",
        rows_read, cols.user, cols.item, cols.timestamp, cols.rating,
        f"; {below} below rating {min_rating} dropped" if min_rating is not None else "",
    )
    return RawInteractions(frame=frame, path=path, fmt=fmt, columns=replace(cols), rows_read=rows_read,
                           rows_below_rating=below)
