"""Text cleaning for prompts: HTML entities and tags, whitespace, category paths.

Rules (stated once, tested):
- strings: HTML entities decoded (repeatedly, so ``&amp;reg;`` -> ``®``), tags
  replaced by a space, runs of whitespace collapsed, ends stripped;
- category paths (a list of lists, Amazon 2014): flattened to the unique category
  names in first-seen order, joined by ", " (``[["Baby","Toys"],["Baby","Gear"]]``
  -> ``"Baby, Toys, Gear"``);
- other lists: cleaned items joined by ", " (empty items dropped);
- dicts (2023 ``details``): ``"key: value"`` pairs joined by "; ";
- numbers: ``str()``, with a trailing ``.0`` dropped; booleans as written;
- None, empty strings and empty containers are *missing* (``None`` is returned).
"""

from __future__ import annotations

import html
import math
import re
from typing import Any

_TAG = re.compile(r"<[^<>]{0,200}>")
_WS = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Decode HTML entities, drop tags, collapse whitespace."""
    for _ in range(3):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    text = _TAG.sub(" ", text)
    return _WS.sub(" ", text).strip()


def flatten_categories(paths: Any) -> list[str]:
    """Unique category names of one or more category paths, in first-seen order."""
    seen: dict[str, None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, (list, tuple)):
            for child in node:
                walk(child)
        elif node is not None:
            name = clean_text(str(node))
            if name:
                seen.setdefault(name, None)

    walk(paths)
    return list(seen)


def field_text(value: Any, name: str = "") -> str | None:
    """A raw field value as one clean string, or None when missing (see module rules)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, str):
        return clean_text(value) or None
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            vt = field_text(v)
            kt = clean_text(str(k))
            if vt and kt:
                parts.append(f"{kt}: {vt}")
        return "; ".join(parts) or None
    if isinstance(value, (list, tuple)):
        if name == "categories" or any(isinstance(v, (list, tuple)) for v in value):
            return ", ".join(flatten_categories(value)) or None
        parts = [t for t in (field_text(v) for v in value) if t]
        return ", ".join(parts) or None
    return clean_text(str(value)) or None
