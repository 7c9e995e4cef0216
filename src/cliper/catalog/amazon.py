"""Amazon review metadata: the 2014 (McAuley) and 2023 (Hou et al.) schemas.

2014 ``meta_*.json(.gz)`` holds one *Python literal* dict per line (single quotes),
so a line is parsed with :func:`json.loads` first and :func:`ast.literal_eval`
second -- never ``eval``. 2023 ``meta_*.jsonl(.gz)`` is strict JSON keyed by
``parent_asin``.
"""

from __future__ import annotations

import ast
import json
import warnings
from typing import Any


def parse_record_line(text: str, allow_literal: bool) -> dict[str, Any]:
    """Parse one line into a dict; raises ValueError with a short reason."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except json.JSONDecodeError as exc:
        if not allow_literal:
            raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
        try:
            with warnings.catch_warnings():  # "invalid escape sequence" in scraped text is not the user's concern
                warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
                obj = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError) as exc2:
            raise ValueError(f"neither JSON nor a Python literal ({type(exc2).__name__})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object per line, found {type(obj).__name__}")
    return obj


AMAZON2014_FIELDS = ("title", "brand", "categories", "description", "price")


def amazon2014_fields(rec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Canonical fields and image URLs of a 2014 record (``imUrl``)."""
    fields = {name: rec.get(name) for name in AMAZON2014_FIELDS}
    url = rec.get("imUrl")
    return fields, [url] if isinstance(url, str) and url.strip() else []


def amazon2023_fields(rec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Canonical fields and image URLs of a 2023 record.

    ``brand`` is the ``store`` (or ``details['Brand']`` when the store is empty),
    so the default views work on both schemas; ``features`` and ``details`` are kept
    for views that want them.
    """
    details = rec.get("details") if isinstance(rec.get("details"), dict) else None
    brand = rec.get("store") or (details or {}).get("Brand") or (details or {}).get("brand")
    fields = {
        "title": rec.get("title"),
        "brand": brand,
        "store": rec.get("store"),
        "categories": rec.get("categories"),
        "main_category": rec.get("main_category"),
        "description": rec.get("description"),
        "features": rec.get("features"),
        "details": details,
        "price": rec.get("price"),
    }
    return fields, _image_urls_2023(rec.get("images"))


def _image_urls_2023(images: Any) -> list[str]:
    """URLs from the 2023 ``images`` field, MAIN variant and largest size first."""
    sizes = ("hi_res", "large", "thumb")
    urls: list[str] = []
    if isinstance(images, list):
        ordered = sorted(
            (im for im in images if isinstance(im, dict)),
            key=lambda im: 0 if str(im.get("variant", "")).upper() == "MAIN" else 1,
        )
        for im in ordered:
            for s in sizes:
                u = im.get(s)
                if isinstance(u, str) and u.strip() and u not in urls:
                    urls.append(u)
    elif isinstance(images, dict):  # column-oriented variant: {"hi_res": [...], "large": [...]}
        for s in sizes:
            for u in images.get(s) or []:
                if isinstance(u, str) and u.strip() and u not in urls:
                    urls.append(u)
    return urls
