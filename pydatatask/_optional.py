"""Import optional backend packages with an install hint when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from pydatatask.errors import MissingDependencyError


def import_optional(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependencyError` naming the extra to install.

    :raises MissingDependencyError: when the package is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top_level = module.partition(".")[0]
        if exc.name is not None and exc.name.partition(".")[0] != top_level:
            raise
        raise MissingDependencyError(module, extra) from exc
