"""Views: one prompt per catalogue field plus a global prompt (the paper's multi-view text).

    >>> from cliper.views import PAPER_VIEWS, build_views
    >>> build_views({"title": "Soft Beads", "brand": None}, PAPER_VIEWS)[1]
    'The product brand is missing.'

Cleaning rules live in :mod:`cliper.views.clean`, the spec format in
:mod:`cliper.views.spec`. Token-aware length handling (truncate / windows) belongs to
the encoder, which knows its tokenizer (see :mod:`cliper.encoders.clip`).
"""

from cliper.views.builder import build_views
from cliper.views.clean import clean_text, field_text, flatten_categories
from cliper.views.spec import (
    MMREC_TEXT_VIEWS,
    PAPER_VIEWS,
    PRESETS,
    ViewSet,
    ViewSpec,
    load_view_set,
    view_set_from_dict,
    view_set_from_fields,
)

__all__ = [
    "MMREC_TEXT_VIEWS",
    "PAPER_VIEWS",
    "PRESETS",
    "ViewSet",
    "ViewSpec",
    "build_views",
    "clean_text",
    "field_text",
    "flatten_categories",
    "load_view_set",
    "view_set_from_dict",
    "view_set_from_fields",
]
