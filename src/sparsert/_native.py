"""Loads the compiled extension ``sparsert._core`` on first use, so that the
pure-Python parts (``sparsert.format``, ``sparsert.prune``, ``sparsert.export``,
``sparsert.onnx``) import without it."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

_module: ModuleType | None = None


def core() -> Any:
    """The ``sparsert._core`` module; ImportError with a hint when it is missing."""
    global _module
    if _module is None:
        try:
            _module = importlib.import_module("sparsert._core")
        except ImportError as e:
            raise ImportError(
                "sparsert's native runtime (sparsert._core) is not built or not found. Install the "
                "package with `pip install .` (or `pip install sparsert`); if you did, make sure Python "
                "imports the installed copy rather than a source folder without the compiled module."
            ) from e
    return _module
