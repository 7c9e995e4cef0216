"""Render an item's fields into its view texts (one string per view, always V of them)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cliper.views.clean import field_text
from cliper.views.spec import ViewSet

# A placeholder and the full stop right after it: a value that already ends a
# sentence ("Log Book.") does not get a second one.
_FILL = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}(\.?)")


def _fill(template: str, values: Mapping[str, str | None], missing: str) -> str:
    def one(m: re.Match[str]) -> str:
        value = values.get(m.group(1)) or missing
        return value if value.endswith((".", "!", "?")) else value + m.group(2)

    return _FILL.sub(one, template)


def build_views(fields: Mapping[str, Any] | None, view_set: ViewSet) -> list[str]:
    """The item's V view texts, in ``view_set`` order.

    ``fields`` are raw catalogue values (None for an item absent from the
    catalogue: every view then reads "... is missing."). Values are cleaned with
    :func:`cliper.views.clean.field_text`. A global view's ``{all}`` joins the
    present values of every field the other views use ("; "), ``{views}`` joins the
    other views' sentences whose fields are all present.
    """
    fields = fields or {}
    cleaned: dict[str, str | None] = {}
    for name in view_set.fields:
        cleaned[name] = field_text(fields.get(name), name)
    missing = view_set.missing_value

    sentences: dict[str, str] = {}
    present_sentences: list[str] = []
    for v in view_set.field_views:
        text = _fill(v.template, cleaned, missing)
        sentences[v.name] = text
        if v.fields and all(cleaned.get(f) for f in v.fields):
            present_sentences.append(text)

    global_values = {
        "all": "; ".join(cleaned[f] for f in _fields_of(view_set) if cleaned.get(f)) or None,
        "views": " ".join(present_sentences) or None,
    }
    out = []
    for v in view_set.views:
        if v.is_global:
            out.append(_fill(v.template, {**cleaned, **global_values}, missing))
        else:
            out.append(sentences[v.name])
    return out


def _fields_of(view_set: ViewSet) -> list[str]:
    seen: dict[str, None] = {}
    for v in view_set.field_views:
        for f in v.fields:
            seen.setdefault(f, None)
    return list(seen)
