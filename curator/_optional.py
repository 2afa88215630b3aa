"""Lazy imports of optional, heavy dependencies with an install hint when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from curator.errors import MissingDependencyError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or fail with the command that installs it.

    Args:
        module: the module to import, e.g. ``"onnxruntime"``.
        extra: the curator extra that provides it, e.g. ``"edge"``.

    Raises:
        MissingDependencyError: the module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not installed; install it with: pip install 'curator[{extra}]'"
        ) from exc
