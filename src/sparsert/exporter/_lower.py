"""torch.fx graph -> the shared intermediate graph (:mod:`sparsert.ir`).

The model is traced with ``torch.fx.symbolic_trace``; ``torch.nn`` layers stay leaf modules, so a
``Conv2d`` arrives as one ``call_module`` node with its module at hand (weights, padding mode, the
BatchNorm after it).  The traced graph is then run once on the example input by an
``Interpreter`` that records, per node, the shape of every tensor that depends on the input and
the value of everything else: shape arithmetic (``x.size(0)``) and tensors computed from
parameters alone become constants; reshapes take their target from the recorded output shape.

Each remaining node is looked up in three tables — modules (by ``isinstance``), functions and
tensor methods — and lowered to catalogue ops.  Nodes found in none are collected, and every one of
them is reported in a single :class:`UnsupportedOpError`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from sparsert import UnsupportedError
from sparsert.ir import Graph, Input, Node


class UnsupportedOpError(UnsupportedError):
    """The model uses ops/modules the exporter cannot map; the message lists all of them."""


class _Unsupported(Exception):
    pass


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
        if isinstance(m, tuple(t for t, _ in _MODULES)):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> torch.fx.GraphModule:
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
            Node(op_type, [i or "" for i in inputs], outs, dict(attrs or {}), self.node.name, _where(self.node))
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
        if node.op == "call_module":
            module = self.modules[str(node.target)]
            for cls, fn in _MODULES:
                if isinstance(module, cls):
                    return fn(self, module)
            self.fail(f"module type {type(module).__module__}.{type(module).__name__} is not supported")
        if node.op == "call_function":
            fn = _FUNCTIONS.get(node.target)
            if fn is None:
                self.fail(f"function {_target_name(node)} is not supported")
            return fn(self)
        if node.op == "call_method":
            fn = _METHODS.get(str(node.target))
            if fn is None:
                self.fail(f"method Tensor.{node.target} is not supported")
            return fn(self)
        self.fail(f"fx op '{node.op}' is not supported")
        return None


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


# --------------------------------------------------------------------------- modules


def _linear_module(cx: Lowering, m: nn.Linear) -> Any:
    x = cx.tensor(cx.node.args[0])
    w = cx.weight(effective_param(m, "weight"), "weight", layer_weight=True)
    bias = effective_param(m, "bias")
    b = cx.weight(bias, "bias") if bias is not None else None
    return cx.emit("Linear", [x, w, b])


def _conv_common(cx: Lowering, m: nn.Module) -> dict[str, Any]:
    if m.padding_mode != "zeros":
        cx.fail(f"padding_mode='{m.padding_mode}' is not supported (only 'zeros')")
    k = _pair(m.kernel_size)
    d = _pair(m.dilation)
    if isinstance(m.padding, str):
        if m.padding == "valid":
            pads = [0, 0, 0, 0]
        else:  # 'same': PyTorch puts the odd extra pixel at the bottom/right
            total = [d[i] * (k[i] - 1) for i in range(2)]
            pads = [total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2]
    else:
        p = _pair(m.padding)
        pads = [p[0], p[1], p[0], p[1]]
    return {"strides": _pair(m.stride), "pads": pads, "dilations": d, "group": int(m.groups)}


def _conv2d_module(cx: Lowering, m: nn.Conv2d) -> Any:
    if len(cx.node.args) != 1 or cx.node.kwargs:
        cx.fail("Conv2d called with extra arguments")
    attrs = _conv_common(cx, m)
    x = cx.tensor(cx.node.args[0])
    if len(cx.shape(cx.node.args[0])) != 4:
        cx.fail("Conv2d on an unbatched (3-D) input is not supported; add the batch dim")
    w = cx.weight(effective_param(m, "weight"), "weight", layer_weight=True)
    bias = effective_param(m, "bias")
    b = cx.weight(bias, "bias") if bias is not None else None
    return cx.emit("Conv", [x, w, b], attrs)


def _conv_transpose2d_module(cx: Lowering, m: nn.ConvTranspose2d) -> Any:
    attrs = _conv_common(cx, m)
    if isinstance(m.padding, str):
        cx.fail("string padding is not valid for ConvTranspose2d")
    in_shape = cx.shape(cx.node.args[0])
    out_shape = cx.out_shape()
    if len(in_shape) != 4:
        cx.fail("ConvTranspose2d on an unbatched (3-D) input is not supported; add the batch dim")
    k, s, d, p = _pair(m.kernel_size), attrs["strides"], attrs["dilations"], attrs["pads"]
    # output_padding from the recorded output, so forward(x, output_size=...) is covered too
    attrs["output_padding"] = [
        out_shape[2 + i] - ((in_shape[2 + i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + 1) for i in range(2)
    ]
    x = cx.tensor(cx.node.args[0])
    w = cx.weight(effective_param(m, "weight"), "weight")
    bias = effective_param(m, "bias")
    b = cx.weight(bias, "bias") if bias is not None else None
    return cx.emit("ConvTranspose", [x, w, b], attrs)


def _batchnorm_module(cx: Lowering, m: nn.modules.batchnorm._BatchNorm) -> Any:
    if m.running_mean is None or m.running_var is None:
        cx.fail(f"{type(m).__name__} with track_running_stats=False uses batch statistics; not supported")
    c = m.num_features
    gamma = effective_param(m, "weight") if m.affine else torch.ones(c)
    beta = effective_param(m, "bias") if m.affine else torch.zeros(c)
    x = cx.tensor(cx.node.args[0])
    names = [
        cx.weight(t, n)
        for t, n in (
            (gamma, "weight"),
            (beta, "bias"),
            (m.running_mean, "running_mean"),
            (m.running_var, "running_var"),
        )
    ]
    return cx.emit("BatchNormalization", [x, *names], {"epsilon": float(m.eps)})


def _unary(
    op_type: str, attrs: Callable[[Any], dict[str, Any]] | None = None
) -> Callable[[Lowering, Any], Any]:
    def lower(cx: Lowering, m: Any) -> Any:
        return cx.emit(op_type, [cx.tensor(cx.node.args[0])], attrs(m) if attrs else {})

    return lower


def _hardtanh_module(cx: Lowering, m: nn.Hardtanh) -> Any:
    return cx.emit("Clip", [cx.tensor(cx.node.args[0])], {"min": float(m.min_val), "max": float(m.max_val)})


def _softmax_module(cx: Lowering, m: nn.Softmax) -> Any:
    if m.dim is None:
        cx.fail("Softmax(dim=None) is ambiguous; pass dim explicitly")
    return cx.emit("Softmax", [cx.tensor(cx.node.args[0])], {"axis": int(m.dim)})


def _alias_module(cx: Lowering, m: nn.Module) -> Any:
    return cx.arg(cx.node.args[0])


def _pool_attrs(cx: Lowering, kernel: Any, stride: Any, padding: Any, ceil_mode: bool) -> dict[str, Any]:
    k = _pair(kernel)
    s = _pair(stride) if stride not in (None, [], ()) else k
    p = _pair(padding)
    return {"kernel_shape": k, "strides": s, "pads": [p[0], p[1], p[0], p[1]], "ceil_mode": int(bool(ceil_mode))}


def _maxpool(
    cx: Lowering,
    x: Any,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    return_indices: bool,
) -> Any:
    if return_indices:
        cx.fail("MaxPool2d with return_indices=True is not supported")
    attrs = _pool_attrs(cx, kernel, stride, padding, ceil_mode)
    attrs["dilations"] = _pair(dilation)
    return cx.emit("MaxPool", [cx.tensor(x)], attrs)


def _avgpool(
    cx: Lowering,
    x: Any,
    kernel: Any,
    stride: Any,
    padding: Any,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Any,
) -> Any:
    if divisor_override is not None:
        cx.fail("AvgPool2d with divisor_override is not supported")
    attrs = _pool_attrs(cx, kernel, stride, padding, ceil_mode)
    attrs["count_include_pad"] = int(bool(count_include_pad))
    return cx.emit("AveragePool", [cx.tensor(x)], attrs)


def _adaptive(cx: Lowering, x: Any, output_size: Any, kind: str) -> Any:
    in_shape = cx.shape(x)
    if len(in_shape) != 4:
        cx.fail(f"Adaptive{kind}Pool2d needs a 4-D input")
    h, w = in_shape[2], in_shape[3]
    size = list(output_size) if isinstance(output_size, (list, tuple)) else [output_size, output_size]
    oh, ow = (h if size[0] is None else int(size[0])), (w if size[1] is None else int(size[1]))
    if kind == "Avg" and oh == 1 and ow == 1:
        return cx.emit("GlobalAveragePool", [cx.tensor(x)])
    if h % oh or w % ow:
        cx.fail(f"Adaptive{kind}Pool2d from {h}x{w} to {oh}x{ow} needs uneven windows; not supported")
    attrs: dict[str, Any] = {"kernel_shape": [h // oh, w // ow], "strides": [h // oh, w // ow]}
    return cx.emit("AveragePool" if kind == "Avg" else "MaxPool", [cx.tensor(x)], attrs)


def _reshape_to_output(cx: Lowering, x: Any) -> Any:
    """A view/reshape/flatten/squeeze/unsqueeze: target shape from the recorded output."""
    name = cx.tensor(x)
    in_shape, out_shape = cx.shape(x), cx.out_shape()
    if in_shape == out_shape:
        return name
    if len(out_shape) == 2 and len(in_shape) >= 2 and out_shape[0] == in_shape[0]:
        return cx.emit("Flatten", [name], {"axis": 1})
    shape = list(out_shape)
    if shape and in_shape and shape[0] == in_shape[0]:
        shape[0] = 0  # copy the (run-time) batch dim
    elif shape:
        shape[0] = -1  # the batch is folded into the leading dim
    return cx.emit("Reshape", [name], {"shape": shape})


def _resize(
    cx: Lowering,
    x: Any,
    size: Any,
    scale_factor: Any,
    mode: str,
    align_corners: Any,
    recompute_scale_factor: Any = None,
    antialias: bool = False,
) -> Any:
    in_shape = cx.shape(x)
    if len(in_shape) != 4:
        cx.fail(f"interpolate on a {len(in_shape)}-D input is not supported (only 4-D NCHW)")
    if antialias:
        cx.fail("interpolate(antialias=True) is not supported")
    attrs: dict[str, Any] = {}
    if mode == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    elif mode == "nearest-exact":
        attrs = {
            "mode": "nearest",
            "coordinate_transformation_mode": "half_pixel",
            "nearest_mode": "round_prefer_ceil",
        }
    elif mode == "bilinear":
        attrs = {
            "mode": "linear",
            "coordinate_transformation_mode": "align_corners" if align_corners else "pytorch_half_pixel",
        }
    else:
        cx.fail(f"interpolate mode '{mode}' is not supported (nearest, nearest-exact, bilinear)")
    out = cx.out_shape()
    if size is not None or recompute_scale_factor:
        attrs["sizes"] = [int(out[2]), int(out[3])]
    else:
        attrs["scales"] = [
            float(s)
            for s in (
                scale_factor if isinstance(scale_factor, (list, tuple)) else (scale_factor, scale_factor)
            )
        ]
    return cx.emit("Resize", [cx.tensor(x)], attrs)


def _upsample_module(cx: Lowering, m: nn.Upsample) -> Any:
    return _resize(
        cx, cx.node.args[0], m.size, m.scale_factor, m.mode, m.align_corners, m.recompute_scale_factor
    )


def _layernorm_module(cx: Lowering, m: nn.LayerNorm) -> Any:
    shape = tuple(m.normalized_shape)
    gamma = effective_param(m, "weight") if m.weight is not None else torch.ones(shape)
    beta = effective_param(m, "bias") if getattr(m, "bias", None) is not None else torch.zeros(shape)
    x = cx.tensor(cx.node.args[0])
    return cx.emit(
        "LayerNormalization",
        [x, cx.weight(gamma, "weight"), cx.weight(beta, "bias")],
        {"axis": -len(shape), "epsilon": float(m.eps)},
    )


def _gelu_attrs(m: Any) -> dict[str, Any]:
    return {"approximate": str(m.approximate)}


# Order matters: subclasses before their bases (ReLU6 is a Hardtanh).
_MODULES: list[tuple[type, Callable[[Lowering, Any], Any]]] = [
    (nn.Linear, _linear_module),
    (nn.Conv2d, _conv2d_module),
    (nn.ConvTranspose2d, _conv_transpose2d_module),
    (nn.BatchNorm1d, _batchnorm_module),
    (nn.BatchNorm2d, _batchnorm_module),
    (nn.ReLU, _unary("Relu")),
    (nn.ReLU6, _unary("Clip", lambda m: {"min": 0.0, "max": 6.0})),
    (nn.Hardtanh, _hardtanh_module),
    (nn.LeakyReLU, _unary("LeakyRelu", lambda m: {"alpha": float(m.negative_slope)})),
    (nn.Sigmoid, _unary("Sigmoid")),
    (nn.Hardsigmoid, _unary("HardSigmoid", lambda m: {"alpha": 1.0 / 6.0, "beta": 0.5})),
    (nn.Hardswish, _unary("HardSwish")),
    (nn.SiLU, _unary("Silu")),
    (nn.Tanh, _unary("Tanh")),
    (nn.GELU, _unary("Gelu", _gelu_attrs)),
    (nn.Softmax, _softmax_module),
    (nn.Dropout, _alias_module),
    (nn.Dropout1d, _alias_module),
    (nn.Dropout2d, _alias_module),
    (nn.AlphaDropout, _alias_module),
    (nn.Identity, _alias_module),
    (
        nn.MaxPool2d,
        lambda cx, m: _maxpool(
            cx, cx.node.args[0], m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices
        ),
    ),
    (
        nn.AvgPool2d,
        lambda cx, m: _avgpool(
            cx,
            cx.node.args[0],
            m.kernel_size,
            m.stride,
            m.padding,
            m.ceil_mode,
            m.count_include_pad,
            m.divisor_override,
        ),
    ),
    (nn.AdaptiveAvgPool2d, lambda cx, m: _adaptive(cx, cx.node.args[0], m.output_size, "Avg")),
    (
        nn.AdaptiveMaxPool2d,
        lambda cx, m: (
            _adaptive(cx, cx.node.args[0], m.output_size, "Max")
            if not m.return_indices
            else cx.fail("AdaptiveMaxPool2d with return_indices=True is not supported")
        ),
    ),
    (nn.Flatten, lambda cx, m: _reshape_to_output(cx, cx.node.args[0])),
    (nn.Unflatten, lambda cx, m: _reshape_to_output(cx, cx.node.args[0])),
    (nn.Upsample, _upsample_module),
    (nn.LayerNorm, _layernorm_module),
]


# --------------------------------------------------------------------------- functions and methods


def _binary(op_type: str, swap: bool = False) -> Callable[[Lowering], Any]:
    def lower(cx: Lowering) -> Any:
        args = list(cx.node.args)
        kwargs = dict(cx.node.kwargs)
        if "other" in kwargs:
            args.append(kwargs.pop("other"))
        alpha = kwargs.pop("alpha", 1)
        rounding = kwargs.pop("rounding_mode", None)
        if kwargs or len(args) != 2:
            cx.fail(f"unsupported arguments {sorted(kwargs)}")
        if alpha != 1:
            cx.fail(f"alpha={alpha} is not supported")
        if rounding is not None:
            cx.fail(f"rounding_mode='{rounding}' is not supported")
        a, b = (args[1], args[0]) if swap else (args[0], args[1])
        return cx.emit(op_type, [cx.operand(a), cx.operand(b)])

    return lower


def _unary_fn(
    op_type: str,
    names: Sequence[str] = ("input",),
    defaults: dict[str, Any] | None = None,
    attrs: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Callable[[Lowering], Any]:
    def lower(cx: Lowering) -> Any:
        b = cx.bind(
            list(names) + ["inplace"] if "inplace" not in names else names,
            {"inplace": False, **(defaults or {})},
        )
        return cx.emit(op_type, [cx.tensor(b[names[0]])], attrs(b) if attrs else {})

    return lower


def _gelu_fn(cx: Lowering) -> Any:
    b = cx.bind(["input", "approximate"], {"approximate": "none"})
    return cx.emit("Gelu", [cx.tensor(b["input"])], {"approximate": str(b["approximate"])})


def _clamp_fn(cx: Lowering) -> Any:
    b = cx.bind(["input", "min", "max"], {"min": None, "max": None})
    lo, hi = cx.arg(b["min"]), cx.arg(b["max"])
    if not all(v is None or isinstance(v, (int, float)) for v in (lo, hi)):
        cx.fail("clamp with tensor bounds is not supported")
    attrs = {}
    if lo is not None:
        attrs["min"] = float(lo)
    if hi is not None:
        attrs["max"] = float(hi)
    return cx.emit("Clip", [cx.tensor(b["input"])], attrs)


def _softmax_fn(cx: Lowering) -> Any:
    b = cx.bind(["input", "dim", "_stacklevel", "dtype"], {"dim": None, "_stacklevel": 3, "dtype": None})
    if b["dim"] is None:
        cx.fail("softmax(dim=None) is ambiguous; pass dim explicitly")
    if b["dtype"] not in (None, torch.float32):
        cx.fail(f"softmax(dtype={b['dtype']}) is not supported")
    return cx.emit("Softmax", [cx.tensor(b["input"])], {"axis": int(b["dim"])})


def _alias_fn(cx: Lowering) -> Any:
    return cx.arg(cx.node.args[0])


def _to_fn(cx: Lowering) -> Any:
    # x.float() / x.to(torch.float32) on a float32 tensor: a no-op (other dtypes fail in _lower)
    return cx.arg(cx.node.args[0])


def _reshape_fn(cx: Lowering) -> Any:
    return _reshape_to_output(cx, cx.node.args[0])


def _cat_fn(cx: Lowering) -> Any:
    b = cx.bind(["tensors", "dim"], {"dim": 0})
    if "axis" in cx.node.kwargs:
        b["dim"] = cx.node.kwargs["axis"]
    tensors = [cx.tensor(t, "every concatenated tensor") for t in b["tensors"]]
    rank = len(cx.out_shape())
    if len(tensors) == 1:
        return tensors[0]
    return cx.emit("Concat", tensors, {"axis": _axis(int(b["dim"]), rank)})


def _cat_axis_fn(cx: Lowering) -> Any:  # torch.concatenate(tensors, axis=0)
    b = cx.bind(["tensors", "axis"], {"axis": 0})
    tensors = [cx.tensor(t, "every concatenated tensor") for t in b["tensors"]]
    return cx.emit("Concat", tensors, {"axis": _axis(int(b["axis"]), len(cx.out_shape()))})


def _split_common(cx: Lowering, x: Any, dim: int) -> Any:
    metas = cx.values[cx.node]
    shapes = [m.shape for m in metas]
    rank = len(cx.shape(x))
    axis = _axis(int(dim), rank)
    sizes = [s[axis] for s in shapes]
    if any(s == 0 for s in sizes):
        cx.fail("split producing an empty piece is not supported")
    outs = cx.emit("Split", [cx.tensor(x)], {"axis": axis, "split": sizes}, out_shapes=shapes)
    return list(outs) if isinstance(outs, tuple) else [outs]


def _chunk_fn(cx: Lowering) -> Any:
    b = cx.bind(["input", "chunks", "dim"], {"dim": 0})
    return _split_common(cx, b["input"], b["dim"])


def _split_fn(cx: Lowering) -> Any:
    b = cx.bind(["tensor", "split_size_or_sections", "dim"], {"dim": 0})
    return _split_common(cx, b["tensor"], b["dim"])


def _split_method(cx: Lowering) -> Any:
    b = cx.bind(["self", "split_size", "dim"], {"dim": 0})
    return _split_common(cx, b["self"], b["dim"])


def _getitem_fn(cx: Lowering) -> Any:
    container = cx.arg(cx.node.args[0])
    index = cx.arg(cx.node.args[1])
    if isinstance(container, (list, tuple)):
        return container[index]
    cx.fail("indexing/slicing a tensor (x[...]) is not supported; use torch.split/chunk")
    return None


def _matmul_fn(cx: Lowering) -> Any:
    a, b = cx.node.args[0], cx.node.args[1]
    if len(cx.shape(a)) < 2:
        cx.fail("matmul with a 1-D operand is not supported")
    b_value = cx.arg(b)
    if not isinstance(b_value, str) and np.ndim(b_value) < 2:
        cx.fail("matmul with a 1-D operand is not supported")
    if isinstance(b_value, str) and len(cx.shape(b)) < 2:
        cx.fail("matmul with a 1-D operand is not supported")
    return cx.emit("MatMul", [cx.tensor(a, "the first matmul operand"), cx.operand(b)])


def _linear_fn(cx: Lowering) -> Any:
    b = cx.bind(["input", "weight", "bias"], {"bias": None})
    w, bias = cx.arg(b["weight"]), cx.arg(b["bias"])
    if isinstance(w, str) or isinstance(bias, str):
        cx.fail("F.linear with a weight/bias computed from the input is not supported")
    w_name = cx.weight(np.asarray(w, dtype=np.float32), "weight", layer_weight=True)
    b_name = cx.weight(np.asarray(bias, dtype=np.float32), "bias") if bias is not None else None
    return cx.emit("Linear", [cx.tensor(b["input"]), w_name, b_name])


def _transpose_common(cx: Lowering, x: Any, d0: int, d1: int) -> Any:
    rank = len(cx.shape(x))
    perm = list(range(rank))
    i, j = _axis(int(d0), rank), _axis(int(d1), rank)
    perm[i], perm[j] = perm[j], perm[i]
    return cx.emit("Transpose", [cx.tensor(x)], {"perm": perm})


def _transpose_fn(cx: Lowering) -> Any:
    b = cx.bind(["input", "dim0", "dim1"])
    return _transpose_common(cx, b["input"], b["dim0"], b["dim1"])


def _t_fn(cx: Lowering) -> Any:
    if len(cx.shape(cx.node.args[0])) != 2:
        cx.fail("t() on a tensor that is not 2-D")
    return _transpose_common(cx, cx.node.args[0], 0, 1)


def _permute(cx: Lowering, x: Any, dims: Sequence[int]) -> Any:
    rank = len(cx.shape(x))
    return cx.emit("Transpose", [cx.tensor(x)], {"perm": [_axis(int(d), rank) for d in dims]})


def _permute_fn(cx: Lowering) -> Any:
    b = cx.bind(["input", "dims"])
    return _permute(cx, b["input"], cx.arg(b["dims"]))


def _permute_method(cx: Lowering) -> Any:
    args = [cx.arg(a) for a in cx.node.args[1:]]
    dims = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
    if "dims" in cx.node.kwargs:
        dims = cx.arg(cx.node.kwargs["dims"])
    return _permute(cx, cx.node.args[0], dims)


def _mean(cx: Lowering, x: Any, dim: Any, keepdim: bool, dtype: Any = None) -> Any:
    if dtype not in (None, torch.float32):
        cx.fail(f"mean(dtype={dtype}) is not supported")
    rank = len(cx.shape(x))
    dims = list(range(rank)) if dim is None else ([dim] if isinstance(dim, int) else list(dim))
    axes = sorted({_axis(int(d), rank) for d in dims})
    name = cx.tensor(x)
    if rank == 4 and axes == [2, 3]:
        if keepdim:
            return cx.emit("GlobalAveragePool", [name])
        shape = cx.shape(x)
        pooled = cx.emit("GlobalAveragePool", [name], out_shapes=[(shape[0], shape[1], 1, 1)])
        return cx.emit("Flatten", [pooled], {"axis": 1})
    return cx.emit("ReduceMean", [name], {"axes": axes, "keepdims": int(bool(keepdim))})


def _mean_fn(cx: Lowering) -> Any:
    b = cx.bind(["input", "dim", "keepdim", "dtype"], {"dim": None, "keepdim": False, "dtype": None})
    return _mean(cx, b["input"], cx.arg(b["dim"]), b["keepdim"], b["dtype"])


def _mean_method(cx: Lowering) -> Any:
    b = cx.bind(["self", "dim", "keepdim", "dtype"], {"dim": None, "keepdim": False, "dtype": None})
    return _mean(cx, b["self"], cx.arg(b["dim"]), b["keepdim"], b["dtype"])


def _interpolate_fn(cx: Lowering) -> Any:
    b = cx.bind(
        ["input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias"],
        {
            "size": None,
            "scale_factor": None,
            "mode": "nearest",
            "align_corners": None,
            "recompute_scale_factor": None,
            "antialias": False,
        },
    )
    return _resize(
        cx,
        b["input"],
        cx.arg(b["size"]),
        cx.arg(b["scale_factor"]),
        b["mode"],
        b["align_corners"],
        b["recompute_scale_factor"],
        b["antialias"],
    )


def _max_pool2d_fn(cx: Lowering) -> Any:
    b = cx.bind(
        ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"],
        {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False},
    )
    return _maxpool(
        cx,
        b["input"],
        b["kernel_size"],
        b["stride"],
        b["padding"],
        b["dilation"],
        b["ceil_mode"],
        b["return_indices"],
    )


def _avg_pool2d_fn(cx: Lowering) -> Any:
    b = cx.bind(
        ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"],
        {
            "stride": None,
            "padding": 0,
            "ceil_mode": False,
            "count_include_pad": True,
            "divisor_override": None,
        },
    )
    return _avgpool(
        cx,
        b["input"],
        b["kernel_size"],
        b["stride"],
        b["padding"],
        b["ceil_mode"],
        b["count_include_pad"],
        b["divisor_override"],
    )


def _adaptive_avg_fn(cx: Lowering) -> Any:
    b = cx.bind(["input", "output_size"])
    return _adaptive(cx, b["input"], cx.arg(b["output_size"]), "Avg")


def _layer_norm_fn(cx: Lowering) -> Any:
    b = cx.bind(
        ["input", "normalized_shape", "weight", "bias", "eps"], {"weight": None, "bias": None, "eps": 1e-5}
    )
    shape = tuple(int(d) for d in cx.arg(b["normalized_shape"]))
    w, bias = cx.arg(b["weight"]), cx.arg(b["bias"])
    if isinstance(w, str) or isinstance(bias, str):
        cx.fail("layer_norm with weight/bias computed from the input is not supported")
    gamma = np.ones(shape, np.float32) if w is None else np.asarray(w, np.float32)
    beta = np.zeros(shape, np.float32) if bias is None else np.asarray(bias, np.float32)
    return cx.emit(
        "LayerNormalization",
        [cx.tensor(b["input"]), cx.weight(gamma, "weight"), cx.weight(beta, "bias")],
        {"axis": -len(shape), "epsilon": float(b["eps"])},
    )


def _dropout_fn(cx: Lowering) -> Any:
    return cx.arg(cx.node.args[0])  # eval mode: identity


_RELU = _unary_fn("Relu")
_SIGMOID = _unary_fn("Sigmoid")
_TANH = _unary_fn("Tanh")

_FUNCTIONS: dict[Any, Callable[[Lowering], Any]] = {
    operator.add: _binary("Add"),
    operator.iadd: _binary("Add"),
    torch.add: _binary("Add"),
    operator.sub: _binary("Sub"),
    operator.isub: _binary("Sub"),
    torch.sub: _binary("Sub"),
    torch.rsub: _binary("Sub", swap=True),
    operator.mul: _binary("Mul"),
    operator.imul: _binary("Mul"),
    torch.mul: _binary("Mul"),
    operator.truediv: _binary("Div"),
    operator.itruediv: _binary("Div"),
    torch.div: _binary("Div"),
    torch.relu: _RELU,
    F.relu: _RELU,
    F.relu6: _unary_fn("Clip", attrs=lambda b: {"min": 0.0, "max": 6.0}),
    F.hardtanh: _unary_fn(
        "Clip",
        ("input", "min_val", "max_val"),
        {"min_val": -1.0, "max_val": 1.0},
        lambda b: {"min": float(b["min_val"]), "max": float(b["max_val"])},
    ),
    F.leaky_relu: _unary_fn(
        "LeakyRelu",
        ("input", "negative_slope"),
        {"negative_slope": 0.01},
        lambda b: {"alpha": float(b["negative_slope"])},
    ),
    torch.sigmoid: _SIGMOID,
    F.sigmoid: _SIGMOID,
    F.hardsigmoid: _unary_fn("HardSigmoid", attrs=lambda b: {"alpha": 1.0 / 6.0, "beta": 0.5}),
    F.hardswish: _unary_fn("HardSwish"),
    F.silu: _unary_fn("Silu"),
    torch.tanh: _TANH,
    F.tanh: _TANH,
    F.gelu: _gelu_fn,
    torch.clamp: _clamp_fn,
    torch.clip: _clamp_fn,
    F.softmax: _softmax_fn,
    torch.softmax: _softmax_fn,
    F.dropout: _dropout_fn,
    F.dropout1d: _dropout_fn,
    F.dropout2d: _dropout_fn,
    F.alpha_dropout: _dropout_fn,
    torch.flatten: _reshape_fn,
    torch.reshape: _reshape_fn,
    torch.squeeze: _reshape_fn,
    torch.unsqueeze: _reshape_fn,
    torch.cat: _cat_fn,
    torch.concat: _cat_fn,
    torch.concatenate: _cat_axis_fn,
    torch.chunk: _chunk_fn,
    torch.split: _split_fn,
    operator.getitem: _getitem_fn,
    torch.matmul: _matmul_fn,
    operator.matmul: _matmul_fn,
    torch.bmm: _matmul_fn,
    F.linear: _linear_fn,
    torch.transpose: _transpose_fn,
    torch.permute: _permute_fn,
    torch.t: _t_fn,
    torch.mean: _mean_fn,
    F.interpolate: _interpolate_fn,
    F.max_pool2d: _max_pool2d_fn,
    F.avg_pool2d: _avg_pool2d_fn,
    F.adaptive_avg_pool2d: _adaptive_avg_fn,
    F.layer_norm: _layer_norm_fn,
}

_METHODS: dict[str, Callable[[Lowering], Any]] = {
    "add": _binary("Add"),
    "add_": _binary("Add"),
    "sub": _binary("Sub"),
    "sub_": _binary("Sub"),
    "mul": _binary("Mul"),
    "mul_": _binary("Mul"),
    "div": _binary("Div"),
    "div_": _binary("Div"),
    "relu": _RELU,
    "relu_": _RELU,
    "sigmoid": _SIGMOID,
    "sigmoid_": _SIGMOID,
    "tanh": _TANH,
    "tanh_": _TANH,
    "clamp": _clamp_fn,
    "clamp_": _clamp_fn,
    "clip": _clamp_fn,
    "softmax": _softmax_fn,
    "flatten": _reshape_fn,
    "view": _reshape_fn,
    "reshape": _reshape_fn,
    "view_as": _reshape_fn,
    "reshape_as": _reshape_fn,
    "squeeze": _reshape_fn,
    "unsqueeze": _reshape_fn,
    "contiguous": _alias_fn,
    "clone": _alias_fn,
    "detach": _alias_fn,
    "float": _to_fn,
    "to": _to_fn,
    "chunk": _chunk_fn,
    "split": _split_method,
    "matmul": _matmul_fn,
    "bmm": _matmul_fn,
    "transpose": _transpose_fn,
    "permute": _permute_method,
    "t": _t_fn,
    "mean": _mean_method,
}


def lower(gm: torch.fx.GraphModule, inputs: Sequence[torch.Tensor], model_name: str) -> Graph:
    lowering = Lowering(gm, inputs)
    graph = lowering.run()
    if lowering.errors:
        count = len(lowering.errors)
        raise UnsupportedOpError(
            f"cannot export {model_name}: {count} unsupported operation{'s' if count > 1 else ''}:\n  - "
            + "\n  - ".join(lowering.errors)
            + "\n(supported modules, functions and methods are listed in docs/export.md)"
        )
    return graph


__all__ = ["UnsupportedOpError", "effective_param", "lower", "trace"]
