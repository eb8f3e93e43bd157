"""Tracing: ``torch.fx.symbolic_trace`` with every mapped ``torch.nn`` layer kept as a leaf module,
then one run of the traced graph on the example input that records, per node, the shape of every
tensor that depends on the input (:class:`_TensorMeta`) and the value of everything else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.fx
from torch import nn

from ._registry import MODULES, UnsupportedOpError, opaque_advice


class _TensorMeta:
    """Shape and dtype of an input-dependent tensor at the example input."""

    def __init__(self, t: torch.Tensor) -> None:
        self.shape = tuple(int(d) for d in t.shape)
        self.dtype = t.dtype


class _Poison:
    """Value of a node that could not be lowered; nodes reading it are skipped silently."""


_POISON = _Poison()


# --------------------------------------------------------------------------- tracing


class _Tracer(torch.fx.Tracer):
    """Keeps every module the exporter maps as a leaf (also subclasses defined outside torch.nn)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, tuple(t for t, _ in MODULES)) or opaque_advice(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> torch.fx.GraphModule:
    advice = opaque_advice(model)
    if advice is not None:
        raise UnsupportedOpError(f"cannot export {type(model).__name__} with sparsert.export: {advice}")
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as e:  # fx raises TraceError, TypeError, NotImplementedError, ...
        raise UnsupportedOpError(
            f"cannot export {type(model).__name__}: torch.fx.symbolic_trace failed "
            f"({type(e).__name__}: {e}). "
            "The exporter needs a forward() without data-dependent Python control flow; move such code "
            "into a submodule of a type listed in docs/export.md or rewrite it with tensor ops."
        ) from e
    return torch.fx.GraphModule(tracer.root, graph, type(model).__name__)


def _record(gm: torch.fx.GraphModule, inputs: Sequence[torch.Tensor]) -> tuple[dict[torch.fx.Node, Any], set]:
    """Runs ``gm`` once; returns per-node values (``_TensorMeta`` for input-dependent tensors)."""
    dynamic: set[torch.fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder" or any(a in dynamic for a in node.all_input_nodes):
            dynamic.add(node)
    values: dict[torch.fx.Node, Any] = {}

    def summarize(node: torch.fx.Node, v: Any) -> Any:
        if node not in dynamic:
            return v
        if isinstance(v, torch.Tensor):
            return _TensorMeta(v)
        if isinstance(v, (tuple, list)) and any(isinstance(x, torch.Tensor) for x in v):
            return type(v)(_TensorMeta(x) if isinstance(x, torch.Tensor) else x for x in v)
        return v

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            result = super().run_node(n)
            values[n] = summarize(n, result)
            return result

    with torch.no_grad():
        Recorder(gm).run(*inputs)
    return values, dynamic


