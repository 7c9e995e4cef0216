"""The per-item record every catalogue reader produces, and the read report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CatalogItem:
    """One catalogue entry mapped to a dataset item id.

    ``fields`` holds raw values by canonical field name (``title``, ``brand``,
    ``categories``, ``description``, ...): strings, lists, dicts or None. Cleaning
    happens in :mod:`cliper.views`, so readers stay lossless. ``image_urls`` is in
    order of preference (the first is used).
    """

    item_id: int
    key: str
    fields: dict[str, Any]
    image_urls: list[str] = field(default_factory=list)
    line: int | None = None


@dataclass
class SkippedLine:
    """A catalogue line that could not be parsed: where, and why."""

    line: int
    reason: str


@dataclass
class CatalogResult:
    """What a reader returns: items by item id plus everything it did not keep.

    ``unmapped`` counts well-formed records whose key is not in the id map (normal:
    a full metadata dump covers more items than a 5-core graph); ``duplicates``
    counts later records for an item id already seen (the first one wins).
    """

    path: str
    fmt: str
    items: dict[int, CatalogItem]
    skipped: list[SkippedLine] = field(default_factory=list)
    unmapped: int = 0
    duplicates: int = 0
    lines_read: int = 0
    first_unmapped: str | None = None  # an example key not in the id map, for error messages

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        return (
            f"{len(self.items)} items from {self.lines_read} records "
            f"({self.n_skipped} malformed lines skipped, {self.unmapped} not in the id map, "
            f"{self.duplicates} duplicates)"
        )
