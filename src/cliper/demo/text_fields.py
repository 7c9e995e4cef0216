"""Metadata records in the Amazon-2014 JSONL schema, each field revealing a different part of an item.

title: colour (sometimes a synonym, sometimes absent), product noun, often a shape word,
brand and price-tier word; brand: the brand (or null); categories: the category path
(often only ``[["Baby"]]``); description: material, pattern and usage sentences placed
anywhere among boilerplate, as long as real descriptions (so a 77-token encoder cuts many).
Lengths and missing rates follow the real 97-item Amazon sample (constants below).
Real-data noise is imitated: HTML entities, stray tags, casing and missing values.
"""

from __future__ import annotations

import html

import numpy as np

from cliper.demo import vocabulary as V
from cliper.demo.latent import Brand, Item

SHAPE_WORDS: dict[str, str] = {
    "circle": "Round", "square": "Square", "triangle": "Triangle", "diamond": "Diamond",
    "star": "Star", "hexagon": "Hexagon", "ring": "Ring", "cross": "Cross", "heart": "Heart",
    "tall_rect": "Tall", "wide_rect": "Wide", "semicircle": "Half-Moon",
}

# Measured on the real 97-item Amazon Baby sample (meta_sample.jsonl; words = whitespace-split after
# HTML unescaping): description median 114 / p90 300 words, missing 6.2%; title median 6 / p90 9.4
# words; brand missing 41%; price missing 16.5%.
DESCRIPTION_WORDS_MEDIAN = 114
DESCRIPTION_WORDS_P90 = 300
DESCRIPTION_MISSING = 0.062
BRAND_MISSING = 0.41
PRICE_MISSING = 0.165
_Z90 = 1.2815516  # standard normal 90th percentile

IMAGE_URL_PREFIX = "https://example.invalid/cliper-demo/images/"  # .invalid: never resolvable, clearly fake


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _html_text(text: str) -> str:
    """Escape like scraped Amazon text does (``&amp;``), keeping quotes readable."""
    return html.escape(text, quote=False)


def make_title(rng: np.random.Generator, item: Item, brand: Brand) -> str:
    r = rng.random()
    if r < 0.8:
        colour = item.colour.capitalize()
    elif r < 0.9:
        colour = _pick(rng, V.COLOUR_SYNONYMS[item.colour]).title()
    else:
        colour = ""  # some titles never say the colour: the image has to
    parts: list[str] = []
    if rng.random() < 0.65:  # real titles usually lead with the brand
        parts.append(brand.name + ("&reg;" if rng.random() < 0.1 else ""))
    if rng.random() < 0.4:
        parts.append(_pick(rng, V.TIER_WORDS[item.tier]))
    parts.append(colour)
    if rng.random() < 0.4:
        parts.append(SHAPE_WORDS[item.shape])
    parts.append(item.product.noun)
    title = " ".join(p for p in parts if p)
    if rng.random() < 0.5:
        title += (" - " if rng.random() < 0.5 else ", ") + _pick(rng, V.TITLE_SUFFIXES)
    if rng.random() < 0.03:
        title = title.upper()
    if rng.random() < 0.05:
        title = title.replace(" ", "  ", 1)
    return _html_text(title).replace("&amp;reg;", "&reg;")


def make_brand(rng: np.random.Generator, brand: Brand) -> str | None:
    r = rng.random()
    if r < BRAND_MISSING:
        return None
    if r < BRAND_MISSING + 0.05:
        return _html_text(brand.name.upper() if rng.random() < 0.5 else brand.name + " Inc.")
    return _html_text(brand.name)


def make_categories(rng: np.random.Generator, item: Item) -> list[list[str]]:
    r = rng.random()
    if r < 0.2:
        paths = [[V.ROOT_CATEGORY]]
    else:
        paths = [list(V.CATEGORY_SUBPATH[item.category]) + [item.product.plural]]
    if rng.random() < 0.1:
        paths.append(list(_pick(rng, V.EXTRA_PATHS)))
    return [[_html_text(c) for c in p] for p in paths]


def _description_length(rng: np.random.Generator) -> int:
    """Target word count: log-normal through the real sample's median and 90th percentile."""
    sigma = np.log(DESCRIPTION_WORDS_P90 / DESCRIPTION_WORDS_MEDIAN) / _Z90
    return int(np.clip(round(DESCRIPTION_WORDS_MEDIAN * np.exp(rng.normal(0.0, sigma))), 8, 800))


def _boilerplate(rng: np.random.Generator, item: Item, brand: Brand, k: int) -> str:
    template = V.BOILERPLATE[k]
    return template.format(noun=item.product.noun.lower(), plural=item.product.plural.lower(), brand=brand.name,
                           n=int(rng.integers(2, 13)), m=int(rng.integers(2, 13)), year=int(rng.integers(1950, 2013)))


def make_description(rng: np.random.Generator, item: Item, brand: Brand) -> str | None:
    """Informative sentences (material, pattern, uses) placed anywhere among boilerplate, to a drawn length.

    Real descriptions are mostly marketing, care and safety text with the telling
    attributes somewhere inside; a token limit that cuts the text can therefore cut them.
    """
    if rng.random() < DESCRIPTION_MISSING:
        return None
    noun = item.product.noun.lower()
    informative = [f"Made from {item.material}, this {noun} is gentle on little hands."]
    if item.pattern != "plain" or rng.random() < 0.5:
        informative.append(f"Finished with {_pick(rng, V.PATTERN_WORDS[item.pattern])}.")
    a, b = rng.choice(len(item.product.uses), size=2, replace=False)
    informative.append(f"Perfect for {item.product.uses[int(a)]} and {item.product.uses[int(b)]}.")
    target = _description_length(rng)
    words = sum(len(x.split()) for x in informative)
    filler: list[str] = []
    order = rng.permutation(len(V.BOILERPLATE)).tolist()
    while order:  # add while the next sentence brings the count closer to the target
        sentence = _boilerplate(rng, item, brand, order.pop(0))
        n = len(sentence.split())
        if words + n / 2 > target:
            break
        filler.append(sentence)
        words += n
        if not order:  # very long descriptions repeat boilerplate, as real ones repeat claims
            order = rng.permutation(len(V.BOILERPLATE)).tolist()
    sentences = filler
    for s in informative:  # each at a uniformly drawn position: the start, the middle or the end
        sentences.insert(int(rng.integers(len(sentences) + 1)), s)
    text = ("  " if rng.random() < 0.5 else " ").join(sentences)
    if rng.random() < 0.15:
        text = text.replace(". ", ".<br>", 1)
    if rng.random() < 0.1:
        text = text.replace(" ", "&nbsp;", 1)
    if rng.random() < 0.1:
        text += "  "
    return text


def make_price(rng: np.random.Generator, item: Item) -> float | None:
    if rng.random() < PRICE_MISSING:
        return None
    raw = item.product.base_price * V.PRICE_TIER_FACTOR[item.tier] * float(np.exp(rng.normal(0.0, 0.15)))
    if rng.random() < 0.5:
        return round(float(max(1.0, np.floor(raw))) + 0.99, 2)
    return round(float(max(0.99, raw)), 2)


def make_record(rng: np.random.Generator, item: Item, brand: Brand, item_id: int, has_url: bool) -> dict:
    """One ``meta_demo.jsonl`` record, keys in the order of the real Amazon sample."""
    return {
        "itemID": item_id,
        "asin": item.asin,
        "title": make_title(rng, item, brand),
        "brand": make_brand(rng, brand),
        "categories": make_categories(rng, item),
        "description": make_description(rng, item, brand),
        "price": make_price(rng, item),
        "imUrl": f"{IMAGE_URL_PREFIX}{item.asin}.jpg" if has_url else None,
    }
