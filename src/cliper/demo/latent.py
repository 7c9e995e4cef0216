"""Latent attributes of synthetic items, brands and users (the hidden truth the files reveal).

Items: product type (-> category, shape), colour, pattern, brand, price tier, material,
quality. Users: a favourite and a second category, two favourite colours, a favourite
pattern, two favourite brands and a preferred price tier. Every draw comes from a
numpy Generator passed in, so a seed fixes everything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cliper.demo import vocabulary as V


@dataclass(frozen=True)
class Brand:
    name: str
    categories: tuple[str, ...]  # where it mostly sells
    tier: str  # its usual price tier
    quality: float  # shifts the quality of its items
    mark_shape: str
    mark_colour: tuple[int, int, int]
    corner: str


@dataclass(frozen=True)
class Item:
    index: int  # generation order (not the MMRec itemID, which follows the sorted ASIN)
    asin: str
    type_index: int
    colour: str
    pattern: str
    brand: int
    tier: str
    material: str
    quality: float  # latent appeal; drives popularity

    @property
    def product(self) -> V.ProductType:
        return V.PRODUCT_TYPES[self.type_index]

    @property
    def category(self) -> str:
        return self.product.category

    @property
    def shape(self) -> str:
        return self.product.shape


@dataclass(frozen=True)
class UserTaste:
    index: int
    reviewer_id: str
    main_category: str
    second_category: str
    colours: tuple[str, str]
    pattern: str
    brands: tuple[int, int]
    tier: str
    activity: int  # number of interactions to draw


_ALNUM = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _unique_codes(rng: np.random.Generator, n: int, prefix: str, length: int) -> list[str]:
    """``n`` distinct random codes like Amazon ASINs (``B00...``) or reviewer ids (``A...``)."""
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        code = prefix + "".join(rng.choice(_ALNUM, size=length - len(prefix)))
        if code not in seen:
            seen.add(code)
            out.append(code)
    return out


def sample_brands(rng: np.random.Generator) -> list[Brand]:
    brands = []
    combos = [(s, c) for s in V.MARK_SHAPES for c in range(len(V.MARK_COLOURS))]
    order = rng.permutation(len(combos))
    for b, name in enumerate(V.BRAND_NAMES):
        n_cat = int(rng.integers(1, 3))
        cats = tuple(str(c) for c in rng.choice(V.CATEGORIES, size=n_cat, replace=False))
        shape, colour = combos[order[b]]
        brands.append(
            Brand(
                name=name,
                categories=cats,
                tier=V.PRICE_TIERS[int(rng.integers(len(V.PRICE_TIERS)))],
                quality=float(rng.normal(0.0, 0.5)),
                mark_shape=shape,
                mark_colour=V.MARK_COLOURS[colour],
                corner=V.CORNERS[int(rng.integers(len(V.CORNERS)))],
            )
        )
    return brands


def sample_items(rng: np.random.Generator, n_items: int, brands: list[Brand]) -> list[Item]:
    asins = _unique_codes(rng, n_items, "B00", 10)
    colours = list(V.COLOURS)
    by_category = {c: [b for b, br in enumerate(brands) if c in br.categories] for c in V.CATEGORIES}
    items = []
    for i in range(n_items):
        t = int(rng.integers(len(V.PRODUCT_TYPES)))
        ptype = V.PRODUCT_TYPES[t]
        # Brands mostly sell in their own categories; a few items come from anywhere.
        local = by_category[ptype.category]
        if local and rng.random() < 0.85:
            brand = int(local[int(rng.integers(len(local)))])
        else:
            brand = int(rng.integers(len(brands)))
        tier = brands[brand].tier if rng.random() < 0.7 else V.PRICE_TIERS[int(rng.integers(3))]
        items.append(
            Item(
                index=i,
                asin=asins[i],
                type_index=t,
                colour=colours[int(rng.integers(len(colours)))],
                pattern=V.PATTERNS[int(rng.choice(len(V.PATTERNS), p=[0.4, 0.2, 0.2, 0.2]))],
                brand=brand,
                tier=tier,
                material=ptype.materials[int(rng.integers(len(ptype.materials)))],
                quality=float(rng.normal(0.0, 1.0) + brands[brand].quality),
            )
        )
    return items


def sample_users(
    rng: np.random.Generator, n_users: int, brands: list[Brand], mean_interactions: float
) -> list[UserTaste]:
    ids = _unique_codes(rng, n_users, "A", 14)
    colours = list(V.COLOURS)
    users = []
    for u in range(n_users):
        cats = rng.choice(len(V.CATEGORIES), size=2, replace=False)
        main_cat = V.CATEGORIES[int(cats[0])]
        # Favourite brands lean towards brands selling in the favourite category.
        weights = np.array([3.0 if main_cat in b.categories else 1.0 for b in brands])
        fav_brands = rng.choice(len(brands), size=2, replace=False, p=weights / weights.sum())
        fav_colours = rng.choice(len(colours), size=2, replace=False)
        # Activity: a long-tailed count with a floor of 5 (some users below MMRec's 10 cut).
        activity = int(max(5, round(rng.gamma(4.0, mean_interactions / 4.0))))
        users.append(
            UserTaste(
                index=u,
                reviewer_id=ids[u],
                main_category=main_cat,
                second_category=V.CATEGORIES[int(cats[1])],
                colours=(colours[int(fav_colours[0])], colours[int(fav_colours[1])]),
                pattern=V.PATTERNS[int(rng.integers(len(V.PATTERNS)))],
                brands=(int(fav_brands[0]), int(fav_brands[1])),
                tier=V.PRICE_TIERS[int(rng.integers(len(V.PRICE_TIERS)))],
                activity=activity,
            )
        )
    return users
