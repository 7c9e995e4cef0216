"""Optional parts of cliper live in pip extras; a missing one is one clear line, not a traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from cliper.errors import ConfigError


def require(module: str, extra: str, what: str, note: str = "") -> ModuleType:
    """Import ``module`` or say which extra brings it: ``pip install 'cliper[extra]'`` (+ ``note``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{what} needs {module.split('.')[0]}, which is not installed; install the "
                          f"{extra} extra: pip install 'cliper[{extra}]'{' ' + note if note else ''}") from None
