"""sparsert — sparse neural-network inference runtime.

    import sparsert
    model = sparsert.load("model.spr")
    y = model.run(x)                       # numpy in, numpy out

Pruning (``sparsert.prune``) and export (``sparsert.export``) need the
``torch`` extra; ONNX conversion (``sparsert.convert``) needs the ``onnx``
extra. Both are imported lazily so that running a model needs only numpy.
"""

from __future__ import annotations

from typing import Any

from sparsert.errors import FormatError, UnsupportedError
from sparsert._core import cpu_features as _cpu_features
from sparsert._core import supported_ops as _supported_ops
from sparsert.graph import GraphBuilder
from sparsert.runtime import Model, TensorSpec, load, load_bytes

__version__ = "0.1.0"

__all__ = [
    "FormatError",
    "GraphBuilder",
    "Model",
    "TensorSpec",
    "UnsupportedError",
    "__version__",
    "convert",
    "cpu_features",
    "export",
    "load",
    "load_bytes",
    "supported_ops",
]


def cpu_features() -> str:
    """The kernels this process uses, e.g. ``"x86-64 avx512"``."""
    return _cpu_features()


def supported_ops() -> list[str]:
    """Op types the native runtime implements (see docs/spr-format.md)."""
    return list(_supported_ops())


def export(*args: Any, **kwargs: Any) -> Any:
    """Export a (pruned) PyTorch model to ``.spr``; see :func:`sparsert.export.export`."""
    from sparsert.export import export as _export

    return _export(*args, **kwargs)


def convert(*args: Any, **kwargs: Any) -> Any:
    """Convert an ONNX model to ``.spr``; see :func:`sparsert.onnx.convert`."""
    from sparsert.onnx import convert as _convert

    return _convert(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # `sparsert.prune` is a subpackage that needs torch: import it on first use.
    if name == "prune":
        import importlib

        return importlib.import_module("sparsert.prune")
    raise AttributeError(f"module 'sparsert' has no attribute {name!r}")
