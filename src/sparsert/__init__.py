"""sparsert — sparse neural-network inference runtime.

    import sparsert
    model = sparsert.load("model.spr")
    y = model.run(x)                       # numpy in, numpy out

Pruning (``sparsert.prune``) and export (``sparsert.export``) need the
``torch`` extra; ONNX conversion (``sparsert.convert``) needs the ``onnx``
extra. Both, and the compiled runtime itself, are imported lazily: importing
``sparsert`` or its pure-Python parts needs only numpy.
"""

from __future__ import annotations

import logging
from importlib import metadata as _metadata
from typing import Any

from sparsert.errors import FormatError, UnsupportedError
from sparsert.graph import GraphBuilder
from sparsert.runtime import InferenceSession, Model, SessionOptions, TensorSpec, load, load_bytes

try:
    __version__ = _metadata.version("sparsert")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

logging.getLogger("sparsert").addHandler(logging.NullHandler())

__all__ = [
    "FormatError",
    "GraphBuilder",
    "InferenceSession",
    "Model",
    "SessionOptions",
    "TensorSpec",
    "UnsupportedError",
    "__version__",
    "activations",
    "cache_sizes",
    "convert",
    "cpu_features",
    "default_threads",
    "export",
    "load",
    "load_bytes",
    "supported_isas",
    "supported_ops",
]


def _native_core() -> Any:
    from sparsert import _native

    return _native.core()


def cpu_features() -> str:
    """The best kernels this process can use, e.g. ``"x86-64 avx512"``."""
    return str(_native_core().cpu_features())


def cache_sizes() -> dict[str, Any]:
    """The data cache sizes (bytes) the kernels size their blocks from, read at run time:
    ``{"l1d": 32768, "l2": 1048576, "l3": ..., "source": "sysconf"}``; ``source`` is
    ``"default"`` when the system does not say (then 32 KiB, 1 MiB, 32 MiB)."""
    return dict(_native_core().cache_sizes())


def supported_isas() -> list[str]:
    """Kernel sets this build and CPU run, e.g. ``["scalar", "avx2", "avx512"]`` (``load(isa=...)``)."""
    return list(_native_core().supported_isas())


def supported_ops() -> list[str]:
    """Op types the native runtime implements (see docs/spr-format.md)."""
    return list(_native_core().supported_ops())


def default_threads() -> int:
    """Threads a model gets by default: the cores this process may use (affinity, cgroup quota)."""
    return int(_native_core().default_threads())


def activations() -> list[dict[str, Any]]:
    """The activation catalogue: op type, fused name, parameter names and defaults (one list
    in the runtime, csrc/ops/activations.inc)."""
    return [dict(a) for a in _native_core().activations()]


def export(*args: Any, **kwargs: Any) -> Any:
    """Export a (pruned) PyTorch model to ``.spr``; see :func:`sparsert.exporter.export`."""
    from sparsert.exporter import export as _export

    return _export(*args, **kwargs)


def convert(*args: Any, **kwargs: Any) -> Any:
    """Convert an ONNX model to ``.spr``; see :func:`sparsert.onnx.convert`."""
    from sparsert.onnx import convert as _convert

    return _convert(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # `sparsert.prune` is a subpackage that needs torch: import it on first use.
    if name in ("prune", "exporter", "onnx"):
        import importlib

        return importlib.import_module(f"sparsert.{name}")
    raise AttributeError(f"module 'sparsert' has no attribute {name!r}")
