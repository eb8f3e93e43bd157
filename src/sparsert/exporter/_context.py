"""The lowering context: walks the traced graph node by node, keeps the shared graph
(:mod:`sparsert.ir`) being built, and dispatches each node to the lowering its table names."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from sparsert.ir import Graph, Input, Node

from ._registry import FUNCTIONS, METHODS, MODULES, _Unsupported, opaque_advice
from ._trace import _POISON, _record, _TensorMeta

# --------------------------------------------------------------------------- lowering context


def _where(node: torch.fx.Node) -> str:
    if node.op == "call_module":
        return f"node '{node.name}' (module '{node.target}')"
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1][0]
        return f"node '{node.name}' (in module '{path}')"
    return f"node '{node.name}' (in the top-level forward)"


def _target_name(node: torch.fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    t = node.target
    module = getattr(t, "__module__", None) or ""
    name = getattr(t, "__name__", str(t))
    if t in vars(operator).values():
        return f"operator.{name}"
    if module.startswith("torch.nn.functional") or t in vars(F).values():
        return f"torch.nn.functional.{name}"
    if module.startswith("torch") or t in vars(torch).values():
        return f"torch.{name}"
    return f"{module}.{name}" if module else name


class Lowering:
    def __init__(self, gm: torch.fx.GraphModule, inputs: Sequence[torch.Tensor]) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.values, self.dynamic = _record(gm, inputs)
        self.graph = Graph()
        self.env: dict[torch.fx.Node, Any] = {}
        self.node: torch.fx.Node | None = None
        self.errors: list[str] = []

    # -- helpers used by the lowering functions --
    def fail(self, message: str) -> None:
        raise _Unsupported(message)

    def shape(self, node_or_value: Any) -> tuple[int, ...]:
        v = self.values[node_or_value] if isinstance(node_or_value, torch.fx.Node) else node_or_value
        if not isinstance(v, _TensorMeta):
            self.fail("expected a tensor")
        return v.shape

    def out_shape(self) -> tuple[int, ...]:
        assert self.node is not None
        return self.shape(self.node)

    def arg(self, a: Any) -> Any:
        """The lowered value of an fx argument (tensor name, numpy constant or Python value)."""
        if isinstance(a, torch.fx.Node):
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.arg(x) for x in a)
        return a

    def tensor(self, a: Any, what: str = "input") -> str:
        """Name of an activation tensor; constants are refused (the op needs an activation)."""
        v = self.arg(a)
        if isinstance(v, str) and not self.graph.is_const(v):
            return v
        self.fail(f"{what} must be computed from the model input, got a constant")
        return ""

    def operand(self, a: Any) -> str:
        """Activation or constant (Python numbers and constant tensors become float32 constants)."""
        v = self.arg(a)
        if isinstance(v, str):
            return v
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        if isinstance(v, (bool, int, float)):
            v = np.array([float(v)], dtype=np.float32)
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "fiub":
                self.fail(f"constant of dtype {v.dtype} is not supported")
            return self.graph.add_const(f"{self.node.name}.const", v.astype(np.float32))
        self.fail(f"operand of type {type(v).__name__} is not supported")
        return ""

    def weight(self, array: torch.Tensor | np.ndarray, suffix: str, layer_weight: bool = False) -> str:
        assert self.node is not None
        base = self.node.target if self.node.op == "call_module" else self.node.name
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().float().numpy()
        return self.graph.add_const(f"{base}.{suffix}", array)

    def emit(
        self,
        op_type: str,
        inputs: Sequence[str | None],
        attrs: dict[str, Any] | None = None,
        out_shapes: Sequence[tuple[int, ...]] | None = None,
    ) -> Any:
        assert self.node is not None
        shapes = list(out_shapes) if out_shapes is not None else [self.out_shape()]
        outs = [
            self.graph.fresh(self.node.name if len(shapes) == 1 else f"{self.node.name}:{k}")
            for k in range(len(shapes))
        ]
        for name, shape in zip(outs, shapes):
            self.graph.shapes[name] = tuple(shape)
        self.graph.nodes.append(
            Node(op_type, [i or "" for i in inputs], outs, dict(attrs or {}), self.node.name,
                 _where(self.node))
        )
        return outs[0] if len(outs) == 1 else tuple(outs)

    def bind(
        self, names: Sequence[str], defaults: dict[str, Any] | None = None, method: bool = False
    ) -> dict:
        """Binds the node's args/kwargs to ``names`` (for methods ``names[0]`` is ``self``)."""
        assert self.node is not None
        bound = dict(defaults or {})
        args = list(self.node.args)
        if len(args) > len(names):
            self.fail(f"unexpected extra positional arguments {args[len(names) :]}")
        for name, value in zip(names, args):
            bound[name] = value
        for key, value in self.node.kwargs.items():
            if key not in names:
                self.fail(f"argument '{key}' is not supported")
            bound[key] = value
        missing = [n for n in names if n not in bound]
        if missing:
            self.fail(f"missing argument(s) {missing}")
        return bound

    # -- the pass --
    def run(self) -> Graph:
        for node in self.gm.graph.nodes:
            self.node = node
            if any(self.env.get(a) is _POISON for a in node.all_input_nodes):
                # after an unsupported op, keep listing unsupported op types (all at once)
                unknown = self._unknown_target(node)
                if unknown:
                    self.errors.append(f"{_where(node)}: {unknown}")
                self.env[node] = _POISON
                continue
            try:
                self.env[node] = self._lower(node)
            except _Unsupported as e:
                self.errors.append(f"{_where(node)}: {e}")
                self.env[node] = _POISON
        return self.graph

    def _lower(self, node: torch.fx.Node) -> Any:
        value = self.values.get(node)
        if node.op == "placeholder":
            if not isinstance(value, _TensorMeta) or value.dtype != torch.float32:
                self.fail("model inputs must be float32 tensors")
            name = self.graph.fresh(node.name)
            dims = (-1, *value.shape[1:])  # dim 0 is the batch: any size at run time
            self.graph.graph_inputs.append(Input(name, dims, "float32", ("batch",) + ("",) * (len(dims) - 1)))
            self.graph.shapes[name] = value.shape
            return name
        if node.op == "output":
            outs = []
            for a in _flatten(node.args[0]):
                v = self.env.get(a) if isinstance(a, torch.fx.Node) else None
                if not isinstance(v, str) or self.graph.is_const(v):
                    self.fail("every model output must be a tensor computed from the input")
                outs.append(v)
            self.graph.outputs = outs
            return None
        if node not in self.dynamic:
            # parameters, buffers and anything computed from them alone: a constant
            if isinstance(value, torch.Tensor):
                return value.detach().cpu().numpy()
            return value
        if not _holds_tensor(value):
            return value  # shape arithmetic: x.size(0), x.shape[2] * 2, ... (static at the example)
        if isinstance(value, _TensorMeta) and value.dtype != torch.float32:
            self.fail(f"produces a {value.dtype} tensor; only float32 activations are supported")
        unknown = self._unknown_target(node)
        if unknown:
            self.fail(unknown)
        if node.op == "call_module":
            module = self.modules[str(node.target)]
            return next(fn for cls, fn in MODULES if isinstance(module, cls))(self, module)
        if node.op == "call_function":
            return FUNCTIONS[node.target](self)
        return METHODS[str(node.target)](self)

    def _unknown_target(self, node: torch.fx.Node) -> str | None:
        """Why the exporter has no lowering for what ``node`` calls (None when it has one)."""
        if node.op == "call_module":
            module = self.modules[str(node.target)]
            if any(isinstance(module, cls) for cls, _ in MODULES):
                return None
            advice = opaque_advice(module)
            kind = f"module type {type(module).__module__}.{type(module).__name__} is not supported"
            return f"{kind}; {advice}" if advice else kind
        if node.op == "call_function":
            return None if node.target in FUNCTIONS else f"function {_target_name(node)} is not supported"
        if node.op == "call_method":
            return None if str(node.target) in METHODS else f"method Tensor.{node.target} is not supported"
        if node.op in ("placeholder", "output", "get_attr"):
            return None
        return f"fx op '{node.op}' is not supported"


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return any(_holds_tensor(v) for v in value)
    return isinstance(value, _TensorMeta)


def _flatten(a: Any) -> list[Any]:
    if isinstance(a, (list, tuple)):
        return [y for x in a for y in _flatten(x)]
    if isinstance(a, dict):
        return [y for x in a.values() for y in _flatten(x)]
    return [a]


def _pair(v: Any) -> list[int]:
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            return [int(v[0])] * 2
        return [int(x) for x in v]
    return [int(v), int(v)]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# --------------------------------------------------------------------------- effective weights


def effective_param(module: nn.Module, name: str) -> torch.Tensor | None:
    """``module.<name>`` after pruning masks: sparsert.prune masks, torch.nn.utils.prune
    (``<name>_orig * <name>_mask``) and parametrizations (read through the attribute)."""
    orig = getattr(module, name + "_orig", None)
    mask = module._buffers.get(name + "_mask")
    if isinstance(orig, torch.Tensor) and isinstance(mask, torch.Tensor):
        value = orig * mask
    else:
        value = getattr(module, name, None)
        if value is None:
            return None
    sparsert_mask = module._buffers.get("sparsert_mask_" + name)
    if sparsert_mask is not None:
        value = value * sparsert_mask
    return value.detach()


