"""A finished feature store is never silently replaced by one made from other inputs.

``extract_features`` into a folder holding a finished store (``manifest.json``) compares
what shapes the arrays -- encoder fingerprint, views, missing-image rule, number of
items, every item's view texts (before the encoder runs) and image bytes (each chunk's
key, before that chunk is encoded) -- with the manifest. Same inputs: the
run resumes (nothing is recomputed). Other inputs: it refuses, saying what differs,
unless ``force`` is given (then the manifest is removed first, so the folder reads as
unfinished until the new extraction completes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from cliper.errors import CliperError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


class FinishedOutput(CliperError):
    """The output folder holds a finished result made with other inputs or options."""


def _finished(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _items_differ(old: list, new: list) -> str | None:
    if len(old) != len(new):
        return None
    diff = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
    return f"{len(diff)} items differ, first item {diff[0]}" if diff else None


def differences_before_encoding(old: dict[str, Any], fingerprint: str, view_names: list[str],
                                templates: dict[str, str], missing_image: str, n_items: int,
                                text_hashes: list[list[str]]) -> list[str]:
    """What differs between a finished store's manifest and this run's settings and texts."""
    found = []
    enc = old.get("encoder") or {}
    if enc.get("fingerprint") != fingerprint:
        found.append(f"encoder ({enc.get('fingerprint')} -> {fingerprint})")
    views = old.get("views") or {}
    if views.get("names") != view_names:
        found.append(f"views ({views.get('names')} -> {view_names})")
    elif views.get("templates") != templates:
        found.append("view templates")
    rule = (old.get("images") or {}).get("missing_image_rule")
    if rule != missing_image:
        found.append(f"missing-image rule ({rule} -> {missing_image})")
    if old.get("n_items") != n_items:
        found.append(f"number of items ({old.get('n_items')} -> {n_items})")
    elif views.get("names") == view_names:
        old_texts = old.get("text_hashes") or {}
        by_item_old = [[old_texts.get(v, [None] * n_items)[i] for v in view_names] for i in range(n_items)]
        what = _items_differ(by_item_old, [list(row) for row in text_hashes])
        if what:
            found.append(f"item texts ({what})")
    return found


def check_before_encoding(out: Path, force: bool, **now) -> dict[str, Any] | None:
    """Refuse (or, with ``force``, unfinish) a finished store made with other settings or texts.

    Returns the finished manifest when it is kept (same inputs so far), else None.
    """
    old = _finished(out)
    if old is None:
        return None
    diffs = ["unreadable manifest"] if not old else differences_before_encoding(old, **now)
    if not diffs:
        return old
    _refuse_or_unfinish(out, diffs, force)
    return None


def check_chunk(out: Path, old: dict[str, Any] | None, index: int, key: str, chunk_size: int,
                force: bool) -> dict[str, Any] | None:
    """Before chunk ``index`` is encoded: its key (texts + image bytes + settings) must match the
    finished store's. Returns ``old`` while the store is kept, None once it is replaced."""
    if old is None:
        return None
    keys = old.get("chunk_keys")
    if not keys or old.get("chunk_size") != chunk_size or index >= len(keys):
        return old  # an older manifest or another chunking: check_images decides at the end
    if keys[index] != key:
        first, last = index * chunk_size, (index + 1) * chunk_size - 1
        _refuse_or_unfinish(out, [f"images (items {first}..{last})"], force)
        return None
    return old


def check_images(out: Path, old: dict[str, Any] | None, image_hashes: list, force: bool) -> None:
    """The second half of the check, once image bytes are known (before anything is written)."""
    if old is None:
        return
    what = _items_differ(list(old.get("image_hashes") or []), list(image_hashes))
    if what or len(old.get("image_hashes") or []) != len(image_hashes):
        _refuse_or_unfinish(out, [f"images ({what or 'other count'})"], force)


def _refuse_or_unfinish(out: Path, diffs: list[str], force: bool) -> None:
    if not force:
        raise FinishedOutput(f"{out} holds a finished feature store made with other inputs: "
                             f"{'; '.join(diffs)}. Choose another --output, or pass --force to replace it")
    log.warning("replacing the finished feature store in %s (--force): %s", out, "; ".join(diffs))
    (out / MANIFEST).unlink(missing_ok=True)
