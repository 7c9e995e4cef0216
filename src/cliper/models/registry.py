"""Name -> recommender class: the built-in backbones, then plugins from other packages.

Built-ins are named here by module so that nothing is imported before it is asked for
(``cliper --help`` stays fast, and the registry imports no model module: imports flow
from the models to the registry, never back). A plugin is a ``Recommender`` subclass in
any installed package, announced under the ``cliper.models`` entry-point group::

    [project.entry-points."cliper.models"]
    mymodel = "my_package.my_module:MyModel"

``register`` adds a class by hand (a notebook, a test).
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points

from cliper.errors import ConfigError
from cliper.models.base import Recommender

ENTRY_POINT_GROUP = "cliper.models"

# name -> "module:Class" of the backbones that ship with cliper
BUILTIN: dict[str, str] = {
    "bpr": "cliper.models.bpr:BPR",
    "lightgcn": "cliper.models.lightgcn:LightGCN",
    "vbpr": "cliper.models.vbpr:VBPR",
    "mmgcn": "cliper.models.mmgcn:MMGCN",
    "grcn": "cliper.models.grcn:GRCN",
    "dualgnn": "cliper.models.dualgnn:DualGNN",
    "lattice": "cliper.models.lattice:LATTICE",
    "slmrec": "cliper.models.slmrec:SLMRec",
    "bm3": "cliper.models.bm3:BM3",
    "freedom": "cliper.models.freedom:FREEDOM",
    "mgcn": "cliper.models.mgcn:MGCN",
    "lgmrec": "cliper.models.lgmrec:LGMRec",
    "dragon": "cliper.models.dragon:DRAGON",
    "smore": "cliper.models.smore:SMORE",
}

_REGISTRY: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make ``cls`` trainable as ``cliper train -m <cls.name>``."""
    key = cls.name.lower()
    if not key:
        raise ValueError(f"{cls.__name__} has no name")
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise ValueError(f"model name {key!r} registered twice")
    _REGISTRY[key] = cls
    return cls


def _plugins() -> dict[str, str]:
    return {ep.name.lower(): ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load(key: str, target: str, origin: str) -> type[Recommender]:
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model {key!r} ({origin} {target}) cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise ConfigError(f"model {key!r} ({origin} {target}) is not a cliper Recommender subclass")
    if cls.name.lower() != key:
        raise ConfigError(f"model {key!r} ({origin} {target}) declares name {cls.name!r}; they must match")
    return register(cls)


def get_model_class(name: str) -> type[Recommender]:
    key = name.lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    if key in BUILTIN:
        return _load(key, BUILTIN[key], "built-in")
    plugins = _plugins()
    if key in plugins:
        return _load(key, plugins[key], f"plugin entry point {ENTRY_POINT_GROUP}:")
    known = sorted({*BUILTIN, *_REGISTRY, *plugins})
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown model {name!r}{hint}; available: {', '.join(known)}")


def available_models() -> list[str]:
    """Every name ``get_model_class`` accepts: built-ins, registered classes and plugins."""
    return sorted({*BUILTIN, *_REGISTRY, *_plugins()})
