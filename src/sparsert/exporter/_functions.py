"""Lowerings of functions (``torch.add``, ``F.relu``, ``operator.getitem``...) and tensor methods
(``x.view``, ``x.add_``...), and their table entries."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F

from ._context import Lowering, _axis
from ._modules import _adaptive, _avgpool, _maxpool, _reshape_to_output, _resize
from ._registry import FUNCTIONS, METHODS

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

FUNCTIONS.update({
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
})

METHODS.update({
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
})

