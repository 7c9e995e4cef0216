"""Id-mapping files: catalogue key (e.g. ASIN) -> dataset item id."""

from __future__ import annotations

import csv
from pathlib import Path

from cliper.errors import DataError

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
    if not path.is_file():
        raise DataError("id-map file not found", path)
    with path.open("r", encoding="utf-8", newline="") as fh:
        first = fh.readline()
        if not first.strip():
            raise DataError("id-map file is empty (expected a header like 'asin<TAB>itemID')", path, 1)
        delim = "\t" if "\t" in first else ","
        header = [h.strip() for h in first.rstrip("\r\n").split(delim)]
        lower = [h.lower() for h in header]
        k = _pick(lower, key_column, _KEY_NAMES, path, "key", header)
        i = _pick(lower, id_column, _ID_NAMES, path, "item id", header)
        mapping: dict[str, int] = {}
        for lineno, row in enumerate(csv.reader(fh, delimiter=delim), start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(k, i):
                raise DataError(f"expected {len(header)} columns, found {len(row)}", path, lineno)
            key = row[k].strip()
            try:
                item_id = int(row[i])
            except ValueError:
                raise DataError(f"item id {row[i]!r} is not an integer", path, lineno) from None
            if item_id < 0:
                raise DataError(f"item id {item_id} is negative", path, lineno)
            old = mapping.get(key)
            if old is not None and old != item_id:
                raise DataError(f"key {key!r} mapped to both {old} and {item_id}", path, lineno)
            mapping[key] = item_id
    if not mapping:
        raise DataError("id-map file has no rows", path)
    return mapping


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
