"""View specifications: which fields make which prompt, in which order.

A view is a name plus a template with ``{field}`` placeholders. Two placeholders
are special and make a *global* view: ``{all}`` (the values of every field used by
the other views, present ones only, joined by "; ") and ``{views}`` (the other
views' sentences, present ones only, joined by a space).

Missing-field rule: a placeholder whose field is missing is filled with the word
``missing`` (``ViewSet.missing_value``), so the view still exists:
"The product brand is missing.". A global view with nothing present becomes its
template with ``missing``.

A views spec in YAML::

    missing_value: missing
    views:
      - {name: title, template: "The product title is {title}."}
      - {name: brand, template: "The product brand is {brand}."}
      - {name: global, template: "The product descriptions are {all}."}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cliper.errors import ConfigError, reading

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
GLOBAL_KEYS = ("all", "views")


@dataclass(frozen=True)
class ViewSpec:
    """One prompt: ``name`` and a ``template`` with ``{field}`` placeholders."""

    name: str
    template: str

    @property
    def fields(self) -> tuple[str, ...]:
        """Fields named by the template, in order (``all``/``views`` excluded)."""
        return tuple(f for f in PLACEHOLDER.findall(self.template) if f not in GLOBAL_KEYS)

    @property
    def is_global(self) -> bool:
        return any(f in GLOBAL_KEYS for f in PLACEHOLDER.findall(self.template))


@dataclass(frozen=True)
class ViewSet:
    """An ordered set of views plus the missing-value word."""

    views: tuple[ViewSpec, ...]
    missing_value: str = "missing"
    name: str = "custom"

    def __post_init__(self) -> None:
        if not self.views:
            raise ConfigError("a views spec needs at least one view")
        names = [v.name for v in self.views]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ConfigError(f"duplicate view names: {sorted(dupes)}")
        for v in self.views:
            if not v.name or not re.fullmatch(r"[A-Za-z0-9_.-]+", v.name):
                raise ConfigError(f"view name {v.name!r} must be letters, digits, '_', '-' or '.'")
            if not PLACEHOLDER.search(v.template):
                raise ConfigError(f"view {v.name!r}: template {v.template!r} has no {{field}} placeholder")
            stray = re.sub(PLACEHOLDER, "", v.template)
            if "{" in stray or "}" in stray:
                raise ConfigError(f"view {v.name!r}: template {v.template!r} has a malformed placeholder")

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.views]

    @property
    def field_views(self) -> tuple[ViewSpec, ...]:
        return tuple(v for v in self.views if not v.is_global)

    @property
    def fields(self) -> list[str]:
        """Every field any view uses, first-seen order."""
        out: dict[str, None] = {}
        for v in self.views:
            for f in v.fields:
                out.setdefault(f, None)
        return list(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "missing_value": self.missing_value,
            "views": [{"name": v.name, "template": v.template, "fields": list(v.fields)} for v in self.views],
        }


PAPER_VIEWS = ViewSet(
    views=(
        ViewSpec("title", "The product title is {title}."),
        ViewSpec("brand", "The product brand is {brand}."),
        ViewSpec("categories", "The product categories are {categories}."),
        ViewSpec("description", "The product description is {description}."),
        ViewSpec("global", "The product descriptions are {all}."),
    ),
    name="cliper",
)
"""The paper's five views (title, brand, categories, description, global)."""

MMREC_TEXT_VIEWS = ViewSet(
    views=(ViewSpec("text", "{title} {brand} {categories} {description}"),),
    name="mmrec-text",
)
"""One view joining the fields, like MMRec's sentence-embedding text features."""

PRESETS = {"cliper": PAPER_VIEWS, "paper": PAPER_VIEWS, "mmrec-text": MMREC_TEXT_VIEWS}


def view_set_from_dict(data: Any, source: str = "views spec") -> ViewSet:
    """Build a :class:`ViewSet` from parsed YAML/JSON (a dict with ``views`` or a bare list)."""
    if isinstance(data, list):
        data = {"views": data}
    if not isinstance(data, dict) or "views" not in data:
        raise ConfigError(f"{source}: expected a mapping with a 'views' list")
    unknown = set(data) - {"views", "missing_value", "name"}
    if unknown:
        raise ConfigError(f"{source}: unknown keys {sorted(unknown)}")
    views = []
    for i, entry in enumerate(data["views"] or []):
        if not isinstance(entry, dict) or set(entry) - {"name", "template"} or "template" not in entry:
            raise ConfigError(f"{source}: view #{i + 1} must have 'template' and optionally 'name', nothing else")
        template = str(entry["template"])
        name = str(entry.get("name") or (PLACEHOLDER.findall(template) or [f"view{i}"])[0])
        views.append(ViewSpec(name, template))
    missing = data.get("missing_value", "missing")
    return ViewSet(tuple(views), missing_value=str(missing), name=str(data.get("name", Path(source).stem)))


def load_view_set(spec: str | Path | None) -> ViewSet:
    """A preset name (``cliper``, ``mmrec-text``), a YAML/JSON file path, or None (the paper's views)."""
    if spec is None:
        return PAPER_VIEWS
    if isinstance(spec, str) and spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"views spec {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
    import yaml

    try:
        with reading(path):
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    return view_set_from_dict(data, str(path))


def view_set_from_fields(fields: list[str], templates: dict[str, str] | None = None, global_view: bool = True) -> ViewSet:
    """Views for ``fields`` with "The product {field} is {value}." unless a template is given."""
    templates = templates or {}
    views = [ViewSpec(f, templates.get(f, f"The product {f} is {{{f}}}.")) for f in fields]
    if global_view:
        views.append(ViewSpec("global", templates.get("global", "The product descriptions are {all}.")))
    return ViewSet(tuple(views), name="fields")
