"""Catalogue readers: raw product metadata -> one record per dataset item id.

Every reader maps the catalogue's own key (ASIN, parent ASIN, a product id column)
to the dataset's integer item id through an id-mapping file, so features line up
with the interaction graph. A malformed line is reported and skipped; nothing else
is dropped silently (unmapped keys and duplicates are counted in the result).

    >>> from cliper.catalog import read_catalog
    >>> result = read_catalog("meta_Baby.json.gz", fmt="amazon2014", id_map="i_id_mapping.tsv")
    >>> result.items[0].fields["title"]
"""

from cliper.catalog.id_map import load_id_map
from cliper.catalog.reader import CATALOG_FORMATS, read_catalog
from cliper.catalog.records import CatalogItem, CatalogResult, SkippedLine

__all__ = [
    "CATALOG_FORMATS",
    "CatalogItem",
    "CatalogResult",
    "SkippedLine",
    "load_id_map",
    "read_catalog",
]
