"""The fixed vocabulary of the synthetic catalogue: every latent attribute and its words.

Keeping the words and their meaning in one table makes the generative model easy to
read (and to document) and lets tests map text back to attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

# Colour name -> base RGB. Distinct hues so a small image model can tell them apart.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 38, 38),
    "orange": (240, 135, 25),
    "yellow": (238, 206, 40),
    "green": (48, 158, 64),
    "teal": (24, 150, 150),
    "blue": (40, 78, 205),
    "purple": (128, 58, 172),
    "pink": (240, 128, 182),
    "brown": (128, 78, 38),
    "gray": (128, 128, 128),
    "black": (28, 28, 28),
}

# Occasional title synonyms: real titles do not always use the basic colour word.
COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("crimson", "cherry"),
    "orange": ("tangerine",),
    "yellow": ("sunshine", "lemon"),
    "green": ("sage", "mint green"),
    "teal": ("aqua",),
    "blue": ("navy", "sky blue"),
    "purple": ("lilac", "violet"),
    "pink": ("rose", "blush"),
    "brown": ("chocolate", "tan"),
    "gray": ("grey", "slate"),
    "black": ("charcoal", "ebony"),
}

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "diamond", "star", "hexagon",
    "ring", "cross", "heart", "tall_rect", "wide_rect", "semicircle",
)

PATTERNS: tuple[str, ...] = ("plain", "stripes", "dots", "checks")

# How the description talks about each pattern (plain items usually do not say).
PATTERN_WORDS: dict[str, tuple[str, ...]] = {
    "plain": ("solid colour", "a clean solid finish", "a single-tone design"),
    "stripes": ("bold stripes", "a striped print", "playful stripes"),
    "dots": ("polka dots", "a dotted print", "little dots"),
    "checks": ("a checked print", "gingham checks", "a plaid check"),
}


@dataclass(frozen=True)
class ProductType:
    """A kind of product: its category, noun and the shape the image draws."""

    category: str
    noun: str
    plural: str
    shape: str
    base_price: float
    materials: tuple[str, ...]
    uses: tuple[str, ...]


PRODUCT_TYPES: tuple[ProductType, ...] = (
    ProductType("Feeding", "Bottle", "Bottles", "tall_rect", 12.0, ("silicone", "glass", "BPA-free plastic"),
                ("night feeds", "on-the-go feeding", "newborn feeding")),
    ProductType("Feeding", "Bowl", "Bowls", "semicircle", 9.0, ("silicone", "bamboo", "BPA-free plastic"),
                ("first solids", "baby-led weaning", "messy mealtimes")),
    ProductType("Feeding", "Bib", "Bibs", "heart", 7.0, ("cotton", "silicone", "muslin"),
                ("messy mealtimes", "teething drool", "first solids")),
    ProductType("Toys", "Ball", "Balls", "circle", 10.0, ("soft fabric", "natural rubber", "plastic"),
                ("tummy time", "grasping practice", "sensory play")),
    ProductType("Toys", "Block Set", "Blocks", "square", 18.0, ("wood", "soft foam", "plastic"),
                ("stacking games", "early learning", "fine motor skills")),
    ProductType("Toys", "Rattle", "Rattles", "ring", 8.0, ("wood", "plastic", "soft fabric"),
                ("grasping practice", "sensory play", "car rides")),
    ProductType("Nursery", "Blanket", "Blankets", "wide_rect", 24.0, ("cotton", "fleece", "muslin"),
                ("naps", "stroller walks", "swaddling")),
    ProductType("Nursery", "Mobile", "Mobiles", "star", 35.0, ("felt", "wood", "cotton"),
                ("calming bedtime", "visual stimulation", "nursery decor")),
    ProductType("Nursery", "Night Light", "Night Lights", "triangle", 22.0, ("plastic", "silicone", "wood"),
                ("calming bedtime", "night feeds", "nursery decor")),
    ProductType("Bath", "Hooded Towel", "Towels", "diamond", 16.0, ("cotton", "bamboo", "terry cloth"),
                ("bath time", "swim days", "drying off")),
    ProductType("Bath", "Bath Sponge", "Sponges", "hexagon", 6.0, ("natural sponge", "soft foam", "cotton"),
                ("bath time", "gentle washing", "sensitive skin")),
    ProductType("Bath", "Tub Toy", "Bath Toys", "semicircle", 9.0, ("natural rubber", "plastic", "silicone"),
                ("bath time", "water play", "sensory play")),
    ProductType("Safety", "Outlet Cover", "Outlet Covers", "cross", 5.0, ("plastic",),
                ("childproofing", "home safety", "crawling stage")),
    ProductType("Safety", "Corner Guard", "Corner Guards", "triangle", 11.0, ("soft foam", "silicone"),
                ("childproofing", "home safety", "crawling stage")),
    ProductType("Safety", "Door Stopper", "Door Stoppers", "square", 7.0, ("soft foam", "plastic"),
                ("childproofing", "pinched fingers", "home safety")),
    ProductType("Gear", "Diaper Bag", "Diaper Bags", "square", 45.0, ("canvas", "nylon", "vegan leather"),
                ("day trips", "stroller walks", "travel")),
    ProductType("Gear", "Stroller Toy", "Stroller Toys", "ring", 14.0, ("plastic", "soft fabric", "wood"),
                ("stroller walks", "car rides", "travel")),
    ProductType("Gear", "Sun Hat", "Sun Hats", "semicircle", 13.0, ("cotton", "canvas", "linen"),
                ("day trips", "sunny days", "travel")),
)

CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(t.category for t in PRODUCT_TYPES))

# Amazon-2014-style top level and secondary category paths.
ROOT_CATEGORY = "Baby"
CATEGORY_SUBPATH: dict[str, tuple[str, ...]] = {
    "Feeding": ("Baby", "Feeding"),
    "Toys": ("Baby", "Baby & Toddler Toys"),
    "Nursery": ("Baby", "Nursery"),
    "Bath": ("Baby", "Bathing & Skin Care"),
    "Safety": ("Baby", "Safety"),
    "Gear": ("Baby", "Gear"),
}
EXTRA_PATHS: tuple[tuple[str, ...], ...] = (
    ("Baby", "Gifts"),
    ("Toys & Games", "Baby & Toddler Toys"),
    ("Home & Kitchen", "Kids' Home Store"),
)

PRICE_TIERS: tuple[str, ...] = ("budget", "mid", "premium")
PRICE_TIER_FACTOR: dict[str, float] = {"budget": 0.6, "mid": 1.0, "premium": 1.8}
TIER_WORDS: dict[str, tuple[str, ...]] = {
    "budget": ("Value", "Basic", "Everyday"),
    "mid": ("Classic", "Soft", "Easy"),
    "premium": ("Deluxe", "Premium", "Organic"),
}

# Brand names are invented. Each brand draws a small mark (shape, colour) in a corner of its images.
BRAND_NAMES: tuple[str, ...] = (
    "Little Sprout", "Moonbeam Baby", "Tiny Toes", "Bramble & Bee", "Nestling",
    "Puddle Jump", "Acorn Kids", "Sunny Cub", "Wobble Works", "Hushaby",
    "Pebble Lane", "Cuddle Cove", "Bright Burrow", "Lullaby Lab", "Otter & Oak",
    "Maple Mini", "Zippy Tot", "Cloud Nine Baby", "Happy Hatch", "Kiddo Co",
)
MARK_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
MARK_COLOURS: tuple[tuple[int, int, int], ...] = (
    (20, 20, 20), (220, 30, 30), (30, 60, 220), (20, 150, 60), (150, 60, 180),
)
CORNERS: tuple[str, ...] = ("top_left", "top_right", "bottom_left", "bottom_right")

TITLE_SUFFIXES: tuple[str, ...] = (
    "for Infants", "for Babies and Toddlers", "0-12 Months", "2-Pack", "Gift Set",
    "for Boys and Girls", "Newborn Essentials",
)

# Description boilerplate: sentences that say nothing about the latent attributes (no colour,
# pattern, material or use words), the bulk of a real Amazon description. ``{noun}``/``{plural}``
# are the product words, ``{brand}`` the brand, ``{n}``/``{m}`` small numbers. No sentence may
# contain a colour name even inside a word ("coloured" holds "red"): tests read colour by substring.
BOILERPLATE: tuple[str, ...] = (
    "This {noun} is designed with both baby and parent in mind.",
    "Every detail has been thought through so that daily routines become a little easier.",
    "Our team of parents and designers tested it at home for months before it reached the shelves.",
    "It comes in a gift box that makes it ideal for birthdays and holidays.",
    "Suitable from birth to {n} years, it grows with your little one.",
    "The {noun} measures {n} x {m} inches and weighs less than a pound.",
    "Lightweight and compact, it fits easily into a bag or a drawer.",
    "Please keep all packaging away from small children.",
    "Always supervise your child during use.",
    "Check the product before each use and discard it at the first sign of wear.",
    "Not intended for children to sleep with unattended.",
    "Wipe with a damp cloth and let it dry in the air.",
    "Do not use bleach or harsh cleaning products.",
    "Free from lead, phthalates and PVC.",
    "Tested to meet or exceed the safety rules that apply in the US and the EU.",
    "Backed by a one-year limited warranty.",
    "If you are not completely satisfied, contact us and we will make it right.",
    "{brand} has been making thoughtful products for families since {year}.",
    "At {brand}, we believe that the simple things are often the best.",
    "Thousands of families already rely on {brand} every day.",
    "Our {plural} are loved by parents across the country.",
    "A must-have for new parents and a favourite on baby lists.",
    "It makes a wonderful addition to any nursery or playroom.",
    "Simple to set up: no tools or batteries are needed.",
    "The package includes {n} {noun} and an instruction sheet.",
    "Sold individually; styles may vary slightly from the photo.",
    "Imported.",
    "Recommended for ages {n} months and up.",
    "Winner of a Parents' Choice award in {year}.",
    "\"Our whole family uses it, and it still looks new after a year.\" - a happy mom",
    "\"The best {noun} we have found so far.\" - Baby Gear Monthly",
    "Small parts may come loose over time; inspect it regularly.",
    "Store it in a cool, dry place away from direct sunlight.",
    "The rounded edges and smooth finish make it comfortable to hold.",
    "It is easy for little fingers to grasp and for grown-ups to clean.",
    "Great at home and at grandma's house.",
    "Each {noun} is inspected by hand before it leaves our workshop.",
    "Product dimensions and weight are approximate.",
    "Please read all instructions before first use and keep them for future reference.",
    "Our customer care team is happy to help with any question you may have.",
    "Please note: this item is not a toy for unsupervised play.",
    "Packaging may differ from the one shown.",
    "Thoughtfully made and built to last through years of use.",
    "We spent years listening to parents to get the little things right.",
    "Every purchase supports our program that donates essentials to families in need.",
)
