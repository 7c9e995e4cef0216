"""Name -> recommender class. Models register themselves with ``@register``."""

from __future__ import annotations

import difflib

from cliper.errors import ConfigError
from cliper.models.base import Recommender

_REGISTRY: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    key = cls.name.lower()
    if not key:
        raise ValueError(f"{cls.__name__} has no name")
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise ValueError(f"model name {key!r} registered twice")
    _REGISTRY[key] = cls
    return cls


def get_model_class(name: str) -> type[Recommender]:
    import cliper.models  # noqa: F401  (imports every model module)

    key = name.lower()
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def available_models() -> list[str]:
    import cliper.models  # noqa: F401

    return sorted(_REGISTRY)
