"""Views: every view holds what it claims (incl. the global view), cleaning, missing rule, specs."""

from __future__ import annotations

import json

import pytest

from cliper.catalog import read_catalog
from cliper.errors import ConfigError
from cliper.paths import shared_dataset
from cliper.views import (
    MMREC_TEXT_VIEWS,
    PAPER_VIEWS,
    build_views,
    clean_text,
    field_text,
    flatten_categories,
    load_view_set,
    view_set_from_fields,
)


@pytest.fixture(scope="module")
def items():
    d = shared_dataset("amazon-baby")
    if d is None or not (d / "meta_sample.jsonl").is_file():
        pytest.skip("shared Amazon Baby sample not present")
    return read_catalog(d / "meta_sample.jsonl").items


def test_paper_views_order_and_templates():
    assert PAPER_VIEWS.names == ["title", "brand", "categories", "description", "global"]
    texts = build_views({"title": "Cup", "brand": "Acme", "categories": [["Baby", "Feeding"]], "description": "Blue."}, PAPER_VIEWS)
    assert texts[:4] == [
        "The product title is Cup.",
        "The product brand is Acme.",
        "The product categories are Baby, Feeding.",
        "The product description is Blue.",
    ]
    assert texts[4].startswith("The product descriptions are ")


def test_every_view_contains_its_field_on_the_real_sample(items):
    for item in items.values():
        f = item.fields
        title, brand, desc = (field_text(f[k]) for k in ("title", "brand", "description"))
        cats = flatten_categories(f["categories"])
        texts = dict(zip(PAPER_VIEWS.names, build_views(f, PAPER_VIEWS)))
        assert title and title in texts["title"]
        assert (brand or "missing") in texts["brand"]
        assert all(c in texts["categories"] for c in cats)
        assert (desc or "missing") in texts["description"]
        # the global view holds ALL present fields (the released code's held only the categories)
        g = texts["global"]
        assert title in g and all(c in g for c in cats)
        for value in (brand, desc):
            if value:
                assert value in g
        assert g != "The product descriptions are " + ", ".join(cats) + "."
        assert "&reg;" not in "".join(texts.values()) and "  " not in "".join(texts.values())


def test_missing_field_rule_and_absent_item():
    texts = build_views({"title": "Cup", "brand": None, "categories": [], "description": "  "}, PAPER_VIEWS)
    assert texts[1] == "The product brand is missing."
    assert texts[2] == "The product categories are missing."
    assert texts[3] == "The product description is missing."
    assert texts[4] == "The product descriptions are Cup."  # the global view lists present fields only
    assert build_views(None, PAPER_VIEWS) == [
        "The product title is missing.", "The product brand is missing.", "The product categories are missing.",
        "The product description is missing.", "The product descriptions are missing.",
    ]


def test_cleaning_rules():
    assert clean_text("Baby Tracker&reg; -\n  <b>Daily</b>&nbsp;Log") == "Baby Tracker® - Daily Log"
    assert clean_text("double &amp;reg; encoded") == "double ® encoded"
    assert flatten_categories([["Baby", "Nursery", "Bedding"], ["Baby", "Toys &amp; Games"]]) == ["Baby", "Nursery", "Bedding", "Toys & Games"]
    assert field_text(17.0) == "17" and field_text(6.09) == "6.09"
    assert field_text({"Brand": "Zoom", "Weight": None}) == "Brand: Zoom"
    assert field_text(["Light", "", "Foldable"], "features") == "Light, Foldable"
    assert field_text(float("nan")) is None and field_text([]) is None
    # a value that already ends a sentence does not get a second full stop
    assert build_views({"title": "Log Book."}, PAPER_VIEWS)[0] == "The product title is Log Book."


def test_yaml_spec_custom_order_views_placeholder_and_errors(tmp_path):
    spec = tmp_path / "views.yaml"
    spec.write_text(
        "missing_value: unknown\nviews:\n"
        "  - {name: brand, template: 'Made by {brand}.'}\n"
        "  - {name: feat, template: 'Features: {features}.'}\n"
        "  - {name: all, template: 'In short: {views}'}\n"
    )
    vs = load_view_set(spec)
    assert vs.names == ["brand", "feat", "all"] and vs.fields == ["brand", "features"]
    texts = build_views({"brand": "Acme", "features": ["Light", "Small"]}, vs)
    assert texts == ["Made by Acme.", "Features: Light, Small.", "In short: Made by Acme. Features: Light, Small."]
    assert build_views({}, vs)[0] == "Made by unknown."
    bad = tmp_path / "bad.yaml"
    bad.write_text("views:\n  - {name: t, template: 'The {title} {brand'}\n")
    with pytest.raises(ConfigError, match="malformed placeholder"):
        load_view_set(bad)
    bad.write_text("views:\n  - {name: t, tmpl: 'x {title}'}\n")
    with pytest.raises(ConfigError, match="view #1"):
        load_view_set(bad)
    with pytest.raises(ConfigError, match="neither a preset"):
        load_view_set(str(tmp_path / "nope.yaml"))
    assert load_view_set("mmrec-text") is MMREC_TEXT_VIEWS


def test_views_from_field_list():
    vs = view_set_from_fields(["title", "store"])
    assert vs.names == ["title", "store", "global"]
    assert build_views({"title": "Cup", "store": "Acme"}, vs) == [
        "The product title is Cup.", "The product store is Acme.", "The product descriptions are Cup; Acme."]


def test_sample_json_matches_reader_untouched(items):
    d = shared_dataset("amazon-baby")
    first = json.loads((d / "meta_sample.jsonl").read_text().splitlines()[0])
    assert items[first["itemID"]].fields["title"] == first["title"]  # raw: entities kept until views
