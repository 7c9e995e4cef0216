"""``read_catalog``: one entry point over every supported catalogue format."""

from __future__ import annotations

import csv
import gzip
import io
import zlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cliper.catalog.amazon import amazon2014_fields, amazon2023_fields, parse_record_line
from cliper.catalog.id_map import load_id_map
from cliper.catalog.records import CatalogItem, CatalogResult, SkippedLine
from cliper.errors import ConfigError, DataError, reading

log = logging.getLogger(__name__)

CATALOG_FORMATS = ("auto", "amazon2014", "amazon2023", "jsonl", "csv", "parquet")

_DEFAULT_KEY = {"amazon2014": "asin", "amazon2023": "parent_asin"}
_ID_FIELDS = ("itemID", "item_id")


def read_catalog(
    path: str | Path,
    fmt: str = "auto",
    id_map: str | Path | Mapping[str, int] | None = None,
    *,
    key_field: str | None = None,
    field_map: Mapping[str, str] | None = None,
    image_field: str | None = None,
    max_skipped_report: int = 20,
) -> CatalogResult:
    """Read a product catalogue into :class:`CatalogItem` records keyed by item id.

    Args:
        path: the catalogue file; ``.gz`` is read transparently (JSON formats).
        fmt: one of :data:`CATALOG_FORMATS`; ``auto`` looks at the suffix and the
            first record (``parent_asin`` -> amazon2023, ``asin`` -> amazon2014).
        id_map: a mapping file (``asin<TAB>itemID``) or a dict key -> item id. When
            None, each record must carry an integer ``itemID``/``item_id``.
        key_field: the record field looked up in ``id_map`` (default ``asin`` for
            2014, ``parent_asin`` for 2023, ``asin`` for generic files).
        field_map: generic formats only: canonical field name -> source column,
            e.g. ``{"title": "name", "brand": "maker"}``. Default: every column.
        image_field: generic formats: the column with an image URL (or list of URLs).

    A malformed line is logged with its number and skipped (``result.skipped``);
    records not in the id map are counted in ``result.unmapped``.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder, not a catalogue file", path)
    if not path.is_file():
        raise DataError("catalogue file not found", path)
    if fmt not in CATALOG_FORMATS:
        raise ConfigError(f"unknown catalogue format {fmt!r}; choose one of {', '.join(CATALOG_FORMATS)}")
    if fmt == "auto":
        with reading(path):
            fmt = detect_format(path)
    if field_map is not None and fmt in ("amazon2014", "amazon2023"):
        raise ConfigError("field_map applies to generic formats (jsonl, csv, parquet), not Amazon schemas")
    mapping = load_id_map(id_map) if isinstance(id_map, (str, Path)) else id_map
    key_field = key_field or _DEFAULT_KEY.get(fmt, "asin")

    result = CatalogResult(path=str(path), fmt=fmt, items={})
    with reading(path):
        _read_into(result, path, fmt, mapping, key_field, field_map, image_field, max_skipped_report)
    if result.n_skipped > max_skipped_report:
        log.warning("%s: %d more malformed lines not shown", path, result.n_skipped - max_skipped_report)
    if result.n_skipped:
        log.warning("%s: skipped %d malformed lines in total", path, result.n_skipped)
    check_coverage(result, mapping, id_map if isinstance(id_map, (str, Path)) else None, key_field)
    return result


def check_coverage(result: CatalogResult, mapping: Mapping[str, int] | None, id_map_path: str | Path | None = None,
                   key_field: str = "asin") -> None:
    """Fail when the catalogue cannot describe the dataset's items; warn when it covers few of them.

    With an id map, the share is of the map's items found in the catalogue: zero is an
    error (a wrong map or key field would otherwise give a store of placeholders). Without
    one, the rows are 0..largest itemID, and a largest id that leaves over 99.9% of them
    empty is an error (a typo or a hostile id that would size every array).
    """
    path = Path(result.path)
    if result.lines_read == 0:
        raise DataError("the catalogue holds no records", path)
    found = len(result.items)
    if mapping is not None:
        n = len(set(mapping.values()))
        if found == 0:
            src = f" {id_map_path}" if id_map_path is not None else ""
            example = f" (catalogue {key_field} {result.first_unmapped!r}, id-map key {next(iter(mapping))!r})" \
                if result.first_unmapped is not None and mapping else ""
            raise DataError(
                f"none of the {result.lines_read} catalogue records matches the id map{src} on {key_field!r}"
                f"{example}; check --id-map and --key-field", path,
            )
    else:
        if found == 0:
            return
        top = max(result.items)
        n = top + 1
        if found < n / 1000:
            raise DataError(
                f"itemID {top} is out of range: it would make {n} item rows of which only {found} have a record; "
                "item ids must be the dataset's (0..N-1), or pass --id-map", path, result.items[top].line,
            )
    if found < 0.5 * n:
        log.warning("%s: only %d of %d items (%.1f%%) found in the catalogue; the others get 'missing' views",
                    path, found, n, 100.0 * found / n)


def _read_into(result: CatalogResult, path: Path, fmt: str, mapping, key_field: str, field_map, image_field,
               max_skipped_report: int) -> None:
    for lineno, rec in _records(path, fmt, result, max_skipped_report):
        if fmt == "amazon2014":
            fields, urls = amazon2014_fields(rec)
        elif fmt == "amazon2023":
            fields, urls = amazon2023_fields(rec)
        else:
            fields, urls = _generic_fields(rec, key_field, field_map, image_field)
        key = rec.get(key_field)
        item_id = _resolve_id(rec, key, mapping, key_field)
        if isinstance(item_id, str):  # a reason: the record is malformed
            _skip(result, lineno, item_id, path, max_skipped_report)
            continue
        if item_id is None:
            result.unmapped += 1
            if result.first_unmapped is None:
                result.first_unmapped = str(key)
            continue
        if item_id in result.items:
            result.duplicates += 1
            continue
        result.items[item_id] = CatalogItem(
            item_id=item_id, key="" if key is None else str(key), fields=fields, image_urls=urls, line=lineno
        )


def detect_format(path: Path) -> str:
    """Guess the format from the suffix and, for JSON lines, the first record's keys."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    with _open_text(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = parse_record_line(line, allow_literal=True)
            except ValueError:
                continue
            if "parent_asin" in rec:
                return "amazon2023"
            if "asin" in rec:
                return "amazon2014"
            return "jsonl"
    return "jsonl"


def _resolve_id(rec: dict[str, Any], key: Any, mapping: Mapping[str, int] | None, key_field: str) -> int | str | None:
    """Item id, None when the key is not in the map, or a string reason when malformed."""
    if mapping is not None:
        if key is None or (isinstance(key, str) and not key.strip()):
            return f"record has no {key_field!r}"
        return mapping.get(str(key).strip())
    for name in _ID_FIELDS:
        if name in rec:
            try:
                value = int(rec[name])
            except (TypeError, ValueError):
                return f"{name} {rec[name]!r} is not an integer"
            return value if value >= 0 else f"{name} {value} is negative"
    return f"record has no item id ({'/'.join(_ID_FIELDS)}) and no id map was given"


def _skip(result: CatalogResult, lineno: int, reason: str, path: Path, max_report: int) -> None:
    result.skipped.append(SkippedLine(lineno, reason))
    if len(result.skipped) <= max_report:
        log.warning("%s:%d: skipped malformed line: %s", path, lineno, reason)


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace", newline="")


def _records(path: Path, fmt: str, result: CatalogResult, max_report: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record dict) pairs; bad lines go to ``result.skipped``."""
    if fmt == "parquet":
        yield from _parquet_records(path, result)
        return
    if fmt == "csv":
        yield from _csv_records(path, result, max_report)
        return
    allow_literal = fmt == "amazon2014"
    with _open_text(path) as fh:
        lineno = 0
        while True:
            try:
                line = fh.readline()
            except (OSError, EOFError, zlib.error) as exc:  # truncated gzip: keep what was read
                _skip(result, lineno + 1, f"unreadable ({exc})", path, max_report)
                break
            if not line:
                break
            lineno += 1
            if not line.strip():
                continue
            result.lines_read += 1
            try:
                yield lineno, parse_record_line(line, allow_literal)
            except ValueError as exc:
                _skip(result, lineno, str(exc), path, max_report)


def _csv_records(path: Path, result: CatalogResult, max_report: int) -> Iterator[tuple[int, dict[str, Any]]]:
    delim = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    with _open_text(path) as fh:
        reader = csv.DictReader(fh, delimiter=delim)
        if reader.fieldnames is None:
            raise DataError("CSV file has no header", path, 1)
        width = len(reader.fieldnames)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                _skip(result, reader.line_num, f"CSV error: {exc}", path, max_report)
                continue
            result.lines_read += 1
            if None in row or any(v is None for v in row.values()):
                _skip(result, reader.line_num, f"expected {width} columns", path, max_report)
                continue
            yield reader.line_num, {k: (v if v != "" else None) for k, v in row.items()}


def _parquet_records(path: Path, result: CatalogResult) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DataError(f"cannot read Parquet file ({exc})", path) from None
    for i, rec in enumerate(table.to_pylist(), start=1):
        result.lines_read += 1
        yield i, rec


def _generic_fields(
    rec: dict[str, Any], key_field: str, field_map: Mapping[str, str] | None, image_field: str | None
) -> tuple[dict[str, Any], list[str]]:
    if field_map is None:
        fields = {k: v for k, v in rec.items() if k not in (key_field, image_field, *_ID_FIELDS)}
    else:
        fields = {canon: rec.get(src) for canon, src in field_map.items()}
    urls: list[str] = []
    if image_field is not None:
        value = rec.get(image_field)
        if isinstance(value, str) and value.strip():
            urls = [value.strip()]
        elif isinstance(value, list):
            urls = [u for u in value if isinstance(u, str) and u.strip()]
    return fields, urls


def parse_field_map(spec: str | None) -> dict[str, str] | None:
    """``"title=name,brand=maker"`` (CLI form) -> ``{"title": "name", "brand": "maker"}``."""
    if not spec:
        return None
    out: dict[str, str] = {}
    for part in spec.split(","):
        if "=" not in part:
            raise ConfigError(f"field map entry {part!r} is not 'field=column'")
        k, v = (s.strip() for s in part.split("=", 1))
        if not k or not v:
            raise ConfigError(f"field map entry {part!r} has an empty side")
        out[k] = v
    return out

