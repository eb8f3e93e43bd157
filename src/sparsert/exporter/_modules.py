"""Lowerings of ``torch.nn`` modules (one ``call_module`` node each), and their table entries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx
from torch import nn

from ._context import Lowering, _pair, effective_param
from ._registry import MODULES

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
    return conv2d_attrs(m)


def conv2d_attrs(m: nn.Module) -> dict[str, Any]:
    """The ``Conv`` attributes of an ``nn.Conv2d`` (zero padding)."""
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
    pads = [p[0], p[1], p[0], p[1]]
    return {"kernel_shape": k, "strides": s, "pads": pads, "ceil_mode": int(bool(ceil_mode))}


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
MODULES.extend([
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
])
