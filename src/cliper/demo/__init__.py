"""A deterministic synthetic catalogue (text, images, users) for offline demos and tests."""

from cliper.demo.generate import DemoCatalog, generate_demo_catalog, is_synthetic_catalog

__all__ = ["DemoCatalog", "generate_demo_catalog", "is_synthetic_catalog"]
