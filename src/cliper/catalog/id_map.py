"""Id-mapping files: catalogue key (e.g. ASIN) -> dataset item id."""

from __future__ import annotations

import csv
from pathlib import Path

from cliper.errors import DataError, reading

_KEY_NAMES = ("asin", "parent_asin", "item", "item_key", "key", "item_id:token")
_ID_NAMES = ("itemid", "item_id", "iid", "id")


def load_id_map(path: str | Path, key_column: str | None = None, id_column: str | None = None) -> dict[str, int]:
    """Read a two-column mapping with a header, tab- or comma-separated.

    The shared ``i_id_mapping.tsv`` is ``asin<TAB>itemID``. Columns are found by
    name (``asin``/``parent_asin``/... and ``itemID``/``item_id``/...) unless given.
    Raises :class:`DataError` naming the file and line for a bad row, a non-integer
    id, or a key mapped twice to different ids.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder, not an id-map file", path)
    if not path.is_file():
        raise DataError("id-map file not found", path)
    with reading(path), path.open("r", encoding="utf-8", newline="") as fh:
        return _parse(fh, path, key_column, id_column)


def _parse(fh, path: Path, key_column: str | None, id_column: str | None) -> dict[str, int]:
    first = fh.readline()
    if not first.strip():
        raise DataError("id-map file is empty (expected a header like 'asin<TAB>itemID')", path, 1)
    delim = "\t" if "\t" in first else ","
    header = [h.strip() for h in first.rstrip("\r\n").split(delim)]
    lower = [h.lower() for h in header]
    k = _pick(lower, key_column, _KEY_NAMES, path, "key", header)
    i = _pick(lower, id_column, _ID_NAMES, path, "item id", header)
    if key_column is None and id_column is None and header[i].lower() not in _ID_NAMES and _is_int(header[i]):
        # a headerless file: its first row would silently become the header and lose its item
        raise DataError(
            f"no header row: line 1 ({', '.join(header)}) looks like data; add a header like 'asin<TAB>itemID'",
            path, 1,
        )
    mapping: dict[str, int] = {}
    line_of_id: dict[int, int] = {}
    for lineno, row in enumerate(csv.reader(fh, delimiter=delim), start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) <= max(k, i):
            raise DataError(f"expected {len(header)} columns, found {len(row)}", path, lineno)
        key = row[k].strip()
        if not key:
            raise DataError("empty key", path, lineno)
        try:
            item_id = int(row[i])
        except ValueError:
            raise DataError(f"item id {row[i]!r} is not an integer", path, lineno) from None
        if item_id < 0:
            raise DataError(f"item id {item_id} is negative", path, lineno)
        old = mapping.get(key)
        if old is not None and old != item_id:
            raise DataError(f"key {key!r} mapped to both {old} and {item_id}", path, lineno)
        if old is None and item_id in line_of_id:
            other = next(k2 for k2, v in mapping.items() if v == item_id)
            raise DataError(
                f"item id {item_id} is given to two keys, {other!r} (line {line_of_id[item_id]}) and {key!r}",
                path, lineno,
            )
        mapping[key] = item_id
        line_of_id.setdefault(item_id, lineno)
    if not mapping:
        raise DataError("id-map file has no rows", path)
    # distinct ids, one per key: they are 0..N-1 exactly when the largest is N-1
    top = max(line_of_id)
    if top >= len(line_of_id):
        raise DataError(
            f"item id {top} is out of range: the map has {len(line_of_id)} item(s), so ids must be "
            f"0..{len(line_of_id) - 1} (contiguous, as `cliper data build` writes them)",
            path, line_of_id[top],
        )
    return mapping


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _pick(lower: list[str], wanted: str | None, names: tuple[str, ...], path: Path, what: str, header: list[str]) -> int:
    if wanted is not None:
        if wanted.lower() not in lower:
            raise DataError(f"{what} column {wanted!r} not in header {header}", path, 1)
        return lower.index(wanted.lower())
    for n in names:
        if n in lower:
            return lower.index(n)
    if len(lower) == 2:  # headerless names but two columns: key first, id second
        return 0 if what == "key" else 1
    raise DataError(f"cannot find the {what} column in header {header}", path, 1)
