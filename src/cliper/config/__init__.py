"""Layered, validated configuration: defaults < dataset < model < user files < command line."""

from cliper.config.loader import expand_grid, load_config, parse_override
from cliper.config.schema import RunConfig

__all__ = ["RunConfig", "expand_grid", "load_config", "parse_override"]
