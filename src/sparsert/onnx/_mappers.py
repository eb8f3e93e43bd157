"""One function per ONNX op type, turning a (folded) ONNX node into sparsert ops.

A mapper gets the graph and the node, and returns the sparsert nodes that
replace it (``domain == "spr"``, op types and attributes of
docs/spr-format.md section 5). It raises :class:`Unsupported` with a reason
when this instance of the op cannot be expressed (non-constant weight,
unsupported mode...). Shapes are static by now (see ``_fold``), so every
mapper may resolve axes, split sizes and reshape targets to plain numbers.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from sparsert.onnx._ir import SPR, Graph, Node
from sparsert.onnx._patterns import clip_bounds, reduce_axes, scalar


class Unsupported(Exception):
    """This node cannot be expressed with sparsert ops; the message says why."""


Mapper = Callable[[Graph, Node], list[Node]]
MAPPERS: dict[str, Mapper] = {}


def mapper(*ops: str) -> Callable[[Mapper], Mapper]:
    def register(fn: Mapper) -> Mapper:
        for op in ops:
            MAPPERS[op] = fn
        return fn

    return register


def spr(
    op: str, inputs: list[str], outputs: list[str] | str, attrs: dict[str, Any] | None = None, name: str = ""
) -> Node:
    outs = [outputs] if isinstance(outputs, str) else list(outputs)
    return Node(op, list(inputs), outs, dict(attrs or {}), name, where=name, domain=SPR)


def _const(g: Graph, node: Node, idx: int, what: str) -> np.ndarray:
    if idx >= len(node.inputs) or not node.inputs[idx]:
        raise Unsupported(f"{what} is missing")
    arr = g.consts.get(node.inputs[idx])
    if arr is None:
        raise Unsupported(f"{what} ({node.inputs[idx]!r}) must be a constant (weights computed at run time)")
    return arr


def _opt_const(g: Graph, node: Node, idx: int, what: str) -> np.ndarray | None:
    if idx >= len(node.inputs) or not node.inputs[idx]:
        return None
    return _const(g, node, idx, what)


def _ints(v: Any) -> list[int]:
    return [int(x) for x in v]


def _axis(axis: int, rank: int, node: Node) -> int:
    if not -rank <= axis < rank:
        raise Unsupported(f"axis {axis} out of range for rank {rank}")
    return axis % rank


def _f32(g: Graph, base: str, arr: np.ndarray) -> str:
    return g.add_const(base, np.ascontiguousarray(arr, dtype=np.float32))


def _only_first_output(node: Node, g: Graph, what: str) -> None:
    used = g.consumers()
    for o in node.outputs[1:]:
        if o and (o in used or o in g.outputs):
            raise Unsupported(f"its {what} output {o!r} is used")


# --------------------------------------------------------------------------- convolution


def _same_pads(in_hw: tuple[int, ...], k: list[int], s: list[int], d: list[int], mode: str) -> list[int]:
    begins, ends = [], []
    for i in range(2):
        out = -(-in_hw[i] // s[i])
        total = max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_hw[i])
        small, large = total // 2, total - total // 2
        if mode == "SAME_UPPER":
            begins.append(small)
            ends.append(large)
        else:
            begins.append(large)
            ends.append(small)
    return [begins[0], begins[1], ends[0], ends[1]]


def _window_pads(g: Graph, node: Node, k: list[int], s: list[int], d: list[int]) -> list[int]:
    auto = node.attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        pads = _ints(node.attrs.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4:
            raise Unsupported(f"pads {pads} (only 2-D windows are supported)")
        return pads
    if auto == "VALID":
        return [0, 0, 0, 0]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        shape = g.shape(node.inputs[0], node)
        return _same_pads(tuple(shape[2:]), k, s, d, auto)
    raise Unsupported(f"auto_pad {auto!r}")


@mapper("Conv")
def _conv(g: Graph, node: Node) -> list[Node]:
    w = _const(g, node, 1, "the weight")
    b = _opt_const(g, node, 2, "the bias")
    x = node.inputs[0]
    one_d = w.ndim == 3
    if w.ndim not in (3, 4):
        raise Unsupported(f"{w.ndim - 2}-D convolution (only 1-D and 2-D are supported)")
    x_rank = len(g.shape(x, node))
    if x_rank != w.ndim:
        raise ValueError(f"{node.describe()}: input X has rank {x_rank} but the weight has rank {w.ndim}")
    k = list(w.shape[2:])
    strides = _ints(node.attrs.get("strides", [1] * len(k)))
    dil = _ints(node.attrs.get("dilations", [1] * len(k)))
    nodes: list[Node] = []
    if one_d:
        # Conv1d runs as a Conv2d of height 1: [N, C, L] -> [N, C, 1, L]
        n_, c_, length = g.shape(x, node)
        x2 = g.fresh(x + ".as2d")
        g.shapes[x2] = (n_, c_, 1, length)
        nodes.append(spr("Reshape", [x], x2, {"shape": [n_, c_, 1, length]}, node.name + ".to2d"))
        w = w.reshape(w.shape[0], w.shape[1], 1, w.shape[2])
        k, strides, dil = [1, k[0]], [1, strides[0]], [1, dil[0]]
        auto = node.attrs.get("auto_pad", "NOTSET") or "NOTSET"
        if auto == "NOTSET":
            p = _ints(node.attrs.get("pads", [0, 0]))
            pads = [0, p[0], 0, p[1]]
        elif auto == "VALID":
            pads = [0, 0, 0, 0]
        else:
            pads = _same_pads((1, length), k, strides, dil, auto)
        x = x2
    else:
        pads = _window_pads(g, node, k, strides, dil)
    attrs = {"strides": strides, "pads": pads, "dilations": dil, "group": int(node.attrs.get("group", 1))}
    ins = [x, _f32(g, node.name + ".weight", w)]
    ins.append(_f32(g, node.name + ".bias", b.reshape(-1)) if b is not None else "")
    if not one_d:
        nodes.append(spr("Conv", ins, node.outputs[0], attrs, node.name))
        return nodes
    out = node.outputs[0]
    n_, co, lo = g.shape(out, node)
    y2 = g.fresh(out + ".2d")
    g.shapes[y2] = (n_, co, 1, lo)
    nodes.append(spr("Conv", ins, y2, attrs, node.name))
    nodes.append(spr("Reshape", [y2], out, {"shape": [n_, co, lo]}, node.name + ".to1d"))
    return nodes


@mapper("ConvTranspose")
def _conv_transpose(g: Graph, node: Node) -> list[Node]:
    w = _const(g, node, 1, "the weight")
    b = _opt_const(g, node, 2, "the bias")
    if w.ndim != 4:
        raise Unsupported(f"{w.ndim - 2}-D transposed convolution (only 2-D is supported)")
    k = list(w.shape[2:])
    s = _ints(node.attrs.get("strides", [1, 1]))
    d = _ints(node.attrs.get("dilations", [1, 1]))
    out_pad = _ints(node.attrs.get("output_padding", [0, 0]))
    auto = node.attrs.get("auto_pad", "NOTSET") or "NOTSET"
    in_hw = g.shape(node.inputs[0], node)[2:]
    if "output_shape" in node.attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = (
            _ints(node.attrs["output_shape"])[-2:]
            if "output_shape" in node.attrs
            else [in_hw[0] * s[0], in_hw[1] * s[1]]
        )
        begins, ends = [], []
        for i in range(2):
            total = s[i] * (in_hw[i] - 1) + out_pad[i] + (k[i] - 1) * d[i] + 1 - target[i]
            if total < 0:
                out_pad[i] -= total
                total = 0
            if auto == "SAME_UPPER":
                begins.append(total // 2)
                ends.append(total - total // 2)
            else:
                begins.append(total - total // 2)
                ends.append(total // 2)
        pads = [begins[0], begins[1], ends[0], ends[1]]
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    else:
        pads = _ints(node.attrs.get("pads", [0, 0, 0, 0]))
    attrs = {
        "strides": s,
        "pads": pads,
        "dilations": d,
        "group": int(node.attrs.get("group", 1)),
        "output_padding": out_pad,
    }
    ins = [node.inputs[0], _f32(g, node.name + ".weight", w)]
    ins.append(_f32(g, node.name + ".bias", b.reshape(-1)) if b is not None else "")
    return [spr("ConvTranspose", ins, node.outputs[0], attrs, node.name)]


@mapper("BatchNormalization")
def _batchnorm(g: Graph, node: Node) -> list[Node]:
    if int(node.attrs.get("training_mode", 0)) != 0:
        raise Unsupported("training_mode=1 (export the model in eval mode)")
    if int(node.attrs.get("spatial", 1)) != 1:
        raise Unsupported("spatial=0")
    _only_first_output(node, g, "running-statistics")
    params = [
        _const(g, node, i, what).reshape(-1)
        for i, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var"))
    ]
    ins = [node.inputs[0]] + [
        _f32(g, f"{node.name}.{n}", p) for n, p in zip(("scale", "bias", "mean", "var"), params)
    ]
    return [
        spr("BatchNormalization", ins, node.outputs[0], {"epsilon": float(node.attrs.get("epsilon", 1e-5))}, node.name)
    ]


# --------------------------------------------------------------------------- linear algebra


@mapper("Gemm")
def _gemm(g: Graph, node: Node) -> list[Node]:
    a, bname = node.inputs[0], node.inputs[1]
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    trans_a = int(node.attrs.get("transA", 0))
    trans_b = int(node.attrs.get("transB", 0))
    c = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else ""
    nodes: list[Node] = []
    if trans_a:
        m_, k_ = g.shape(a, node)
        at = g.fresh(a + ".T")
        g.shapes[at] = (k_, m_)
        nodes.append(spr("Transpose", [a], at, {"perm": [1, 0]}, node.name + ".transA"))
        a = at
    rows, n_out = g.shape(node.outputs[0], node)
    out = node.outputs[0]
    if bname in g.consts:
        bmat = g.consts[bname].astype(np.float32)
        w = (bmat if trans_b else bmat.T) * alpha  # Linear wants [N, K]
        bias = ""
        extra = ""  # a C that is not a per-column bias is added after the Linear
        if c and c in g.consts:
            cv = g.consts[c].astype(np.float32) * beta
            if cv.size == 1 or (cv.size == n_out and cv.shape[-1] == n_out):
                bias = _f32(g, node.name + ".bias", np.broadcast_to(cv.reshape(-1), (n_out,)))
            else:
                extra = _f32(g, node.name + ".C", cv)
        elif c:
            extra = c
            if beta != 1.0:
                extra = g.fresh(c + ".beta")
                g.shapes[extra] = g.shape(c, node)
                nodes.append(
                    spr(
                        "Mul",
                        [c, _f32(g, node.name + ".beta", np.array([beta]))],
                        extra,
                        {},
                        node.name + ".beta",
                    )
                )
        lin_out = g.fresh(out + ".ab") if extra else out
        g.shapes.setdefault(lin_out, (rows, n_out))
        nodes.append(spr("Linear", [a, _f32(g, node.name + ".weight", w), bias], lin_out, {}, node.name))
        if extra:
            nodes.append(spr("Add", [lin_out, extra], out, {}, node.name + ".addC"))
        return nodes
    # both operands are activations: MatMul, then scale and add
    b_in = bname
    if trans_b:
        k2, n2 = g.shape(bname, node)
        bt = g.fresh(bname + ".T")
        g.shapes[bt] = (n2, k2)
        nodes.append(spr("Transpose", [bname], bt, {"perm": [1, 0]}, node.name + ".transB"))
        b_in = bt
    cur = out if (alpha == 1.0 and not c) else g.fresh(out + ".ab")
    g.shapes.setdefault(cur, (rows, n_out))
    nodes.append(spr("MatMul", [a, b_in], cur, {}, node.name))
    if alpha != 1.0:
        nxt = out if not c else g.fresh(out + ".alpha")
        g.shapes.setdefault(nxt, (rows, n_out))
        nodes.append(
            spr("Mul", [cur, _f32(g, node.name + ".alpha", np.array([alpha]))], nxt, {}, node.name + ".alpha")
        )
        cur = nxt
    if c:
        if c in g.consts:
            cin = _f32(g, node.name + ".C", g.consts[c].astype(np.float32) * beta)
        elif beta != 1.0:
            cin = g.fresh(c + ".beta")
            g.shapes[cin] = g.shape(c, node)
            nodes.append(
                spr("Mul", [c, _f32(g, node.name + ".beta", np.array([beta]))], cin, {}, node.name + ".beta")
            )
        else:
            cin = c
        nodes.append(spr("Add", [cur, cin], out, {}, node.name + ".addC"))
    return nodes


@mapper("MatMul")
def _matmul(g: Graph, node: Node) -> list[Node]:
    a, b = node.inputs[0], node.inputs[1]
    if a in g.consts:
        raise Unsupported("a constant first operand (only the second may be a constant)")
    a_shape = g.shape(a, node)
    if b in g.consts:
        w = g.consts[b]
        if w.ndim == 2 and len(a_shape) >= 2:
            return [
                spr("Linear", [a, _f32(g, node.name + ".weight", w.T), ""], node.outputs[0], {}, node.name)
            ]
        if w.ndim < 2 or len(a_shape) < 2:
            raise Unsupported("1-D operands")
        return [spr("MatMul", [a, _f32(g, node.name + ".B", w)], node.outputs[0], {}, node.name)]
    if len(a_shape) < 2 or len(g.shape(b, node)) < 2:
        raise Unsupported("1-D operands")
    return [spr("MatMul", [a, b], node.outputs[0], {}, node.name)]


# --------------------------------------------------------------------------- element-wise


_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "HardSwish": "HardSwish"}


@mapper(*_UNARY)
def _unary(g: Graph, node: Node) -> list[Node]:
    return [spr(_UNARY[node.op], [node.inputs[0]], node.outputs[0], {}, node.name)]


@mapper("LeakyRelu")
def _leaky(g: Graph, node: Node) -> list[Node]:
    return [
        spr(
            "LeakyRelu",
            [node.inputs[0]],
            node.outputs[0],
            {"alpha": float(node.attrs.get("alpha", 0.01))},
            node.name,
        )
    ]


@mapper("HardSigmoid")
def _hard_sigmoid(g: Graph, node: Node) -> list[Node]:
    attrs = {"alpha": float(node.attrs.get("alpha", 0.2)), "beta": float(node.attrs.get("beta", 0.5))}
    return [spr("HardSigmoid", [node.inputs[0]], node.outputs[0], attrs, node.name)]


@mapper("Gelu")
def _gelu(g: Graph, node: Node) -> list[Node]:
    approx = node.attrs.get("approximate", "none")
    if approx not in ("none", "tanh"):
        raise Unsupported(f"approximate={approx!r}")
    return [spr("Gelu", [node.inputs[0]], node.outputs[0], {"approximate": approx}, node.name)]


@mapper("Clip")
def _clip(g: Graph, node: Node) -> list[Node]:
    bounds = clip_bounds(g, node)
    if bounds is None:
        raise Unsupported("min/max must be constants")
    lo, hi = bounds
    x, y = node.inputs[0], node.outputs[0]
    if lo == 0.0 and hi == 6.0:
        return [spr("Clip", [x], y, {"min": 0.0, "max": 6.0}, node.name)]
    if lo == 0.0 and hi == math.inf:
        return [spr("Relu", [x], y, {}, node.name)]
    attrs: dict[str, Any] = {}
    if lo != -math.inf:
        attrs["min"] = lo
    if hi != math.inf:
        attrs["max"] = hi
    return [spr("Clip", [x], y, attrs, node.name)]


def _binary_operand(g: Graph, name: str, node: Node, k: int) -> str:
    if name in g.consts:
        return _f32(g, f"{node.name}.{k}", g.consts[name])
    return name


@mapper("Add", "Sub", "Mul", "Div")
def _binary(g: Graph, node: Node) -> list[Node]:
    a, b = (_binary_operand(g, n, node, k) for k, n in enumerate(node.inputs[:2]))
    return [spr(node.op, [a, b], node.outputs[0], {}, node.name)]


@mapper("Sum")
def _sum(g: Graph, node: Node) -> list[Node]:
    ins = [_binary_operand(g, n, node, k) for k, n in enumerate(node.inputs) if n]
    if len(ins) == 1:
        return _copy(g, node)
    nodes = []
    cur = ins[0]
    for k, nxt in enumerate(ins[1:]):
        last = k == len(ins) - 2
        out = node.outputs[0] if last else g.fresh(node.outputs[0] + f".sum{k}")
        if not last:
            g.shapes[out] = g.shape(node.outputs[0], node)
        nodes.append(spr("Add", [cur, nxt], out, {}, f"{node.name}.{k}"))
        cur = out
    return nodes


@mapper("Neg")
def _neg(g: Graph, node: Node) -> list[Node]:
    return [
        spr(
            "Mul",
            [node.inputs[0], _f32(g, node.name + ".neg", np.array([-1.0]))],
            node.outputs[0],
            {},
            node.name,
        )
    ]


@mapper("Reciprocal")
def _reciprocal(g: Graph, node: Node) -> list[Node]:
    return [
        spr(
            "Div",
            [_f32(g, node.name + ".one", np.array([1.0])), node.inputs[0]],
            node.outputs[0],
            {},
            node.name,
        )
    ]


@mapper("Pow")
def _pow(g: Graph, node: Node) -> list[Node]:
    e = scalar(g, node.inputs[1]) if node.inputs[1] in g.consts else None
    if e == 2.0:
        return [spr("Mul", [node.inputs[0], node.inputs[0]], node.outputs[0], {}, node.name)]
    if e == 1.0:
        return _copy(g, node)
    raise Unsupported("only the exponents 1 and 2 (other powers are not in the op set)")


# --------------------------------------------------------------------------- shape ops


def _copy(g: Graph, node: Node) -> list[Node]:
    """An identity that must stay (its output is a graph output): a Reshape to the same shape."""
    shape = g.shape(node.inputs[0], node)
    return [spr("Reshape", [node.inputs[0]], node.outputs[0], {"shape": list(shape)}, node.name)]


@mapper("Identity", "Dropout")
def _identity(g: Graph, node: Node) -> list[Node]:
    _only_first_output(node, g, "mask")
    return _copy(g, node)


@mapper("Cast")
def _cast(g: Graph, node: Node) -> list[Node]:
    if int(node.attrs.get("to", 0)) != 1:
        raise Unsupported("casts of activations to non-float32 types (the runtime computes in float32)")
    return _copy(g, node)


def _reshape_to_output(g: Graph, node: Node) -> list[Node]:
    out_shape = g.shape(node.outputs[0], node)
    return [spr("Reshape", [node.inputs[0]], node.outputs[0], {"shape": list(out_shape)}, node.name)]


@mapper("Reshape")
def _reshape(g: Graph, node: Node) -> list[Node]:
    if node.outputs[0] in g.shapes:
        return _reshape_to_output(g, node)
    shape = _const(g, node, 1, "the target shape").reshape(-1)
    if int(node.attrs.get("allowzero", 0)) and 0 in shape:
        raise Unsupported("allowzero=1 with a 0 in the target shape (empty tensors)")
    return [spr("Reshape", [node.inputs[0]], node.outputs[0], {"shape": _ints(shape)}, node.name)]


@mapper("Squeeze", "Unsqueeze")
def _squeeze(g: Graph, node: Node) -> list[Node]:
    in_shape = list(g.shape(node.inputs[0], node))
    if node.outputs[0] in g.shapes:
        return _reshape_to_output(g, node)
    if "axes" in node.attrs:
        axes = _ints(node.attrs["axes"])
    elif len(node.inputs) > 1 and node.inputs[1]:
        axes = _ints(_const(g, node, 1, "axes").reshape(-1))
    else:
        axes = [i for i, d in enumerate(in_shape) if d == 1] if node.op == "Squeeze" else []
    if node.op == "Squeeze":
        rank = len(in_shape)
        drop = {a % rank for a in axes}
        out = [d for i, d in enumerate(in_shape) if i not in drop]
    else:
        rank = len(in_shape) + len(axes)
        out = list(in_shape)
        for a in sorted(a % rank for a in axes):
            out.insert(a, 1)
    return [spr("Reshape", [node.inputs[0]], node.outputs[0], {"shape": out}, node.name)]


@mapper("Flatten")
def _flatten(g: Graph, node: Node) -> list[Node]:
    return [
        spr("Flatten", [node.inputs[0]], node.outputs[0], {"axis": int(node.attrs.get("axis", 1))}, node.name)
    ]


@mapper("Transpose")
def _transpose(g: Graph, node: Node) -> list[Node]:
    rank = len(g.shape(node.inputs[0], node))
    perm = _ints(node.attrs.get("perm", list(reversed(range(rank)))))
    return [spr("Transpose", [node.inputs[0]], node.outputs[0], {"perm": perm}, node.name)]


@mapper("Concat")
def _concat(g: Graph, node: Node) -> list[Node]:
    rank = len(g.shape(node.outputs[0], node))
    ins = [_binary_operand(g, n, node, k) for k, n in enumerate(node.inputs) if n]
    if len(ins) == 1:
        return _copy(g, node)
    return [
        spr("Concat", ins, node.outputs[0], {"axis": _axis(int(node.attrs["axis"]), rank, node)}, node.name)
    ]


def _split_sizes(g: Graph, node: Node, dim: int) -> list[int]:
    n_out = len(node.outputs)
    if "split" in node.attrs:
        return _ints(node.attrs["split"])
    if len(node.inputs) > 1 and node.inputs[1]:
        return _ints(_const(g, node, 1, "split").reshape(-1))
    if "num_outputs" in node.attrs:
        n = int(node.attrs["num_outputs"])
        chunk = -(-dim // n)
        sizes = [chunk] * (n - 1)
        sizes.append(dim - chunk * (n - 1))
        return sizes
    if dim % n_out:
        raise Unsupported(f"dim {dim} does not split evenly into {n_out} outputs")
    return [dim // n_out] * n_out


@mapper("Split")
def _split(g: Graph, node: Node) -> list[Node]:
    shape = g.shape(node.inputs[0], node)
    axis = _axis(int(node.attrs.get("axis", 0)), len(shape), node)
    sizes = _split_sizes(g, node, shape[axis])
    if sum(sizes) != shape[axis] or any(s < 1 for s in sizes):
        raise Unsupported(f"split sizes {sizes} for a dim of {shape[axis]}")
    outs = [o or g.fresh(node.name + ".unused") for o in node.outputs]
    return [spr("Split", [node.inputs[0]], outs, {"axis": axis, "split": sizes}, node.name)]


def _slice_axis(
    g: Graph, node: Node, x: str, axis: int, start: int, end: int, out: str, tag: str
) -> list[Node]:
    """x[..., start:end, ...] along ``axis`` as one Split whose middle output is kept."""
    shape = list(g.shape(x, node))
    dim = shape[axis]
    sizes = [start, end - start, dim - end]
    outs = []
    split_sizes = []
    for k, s in enumerate(sizes):
        if s == 0:
            continue
        outs.append(out if k == 1 else g.fresh(f"{node.name}.{tag}.drop{k}"))
        split_sizes.append(s)
    if len(split_sizes) == 1:
        return [spr("Reshape", [x], out, {"shape": shape}, f"{node.name}.{tag}")]
    return [spr("Split", [x], outs, {"axis": axis, "split": split_sizes}, f"{node.name}.{tag}")]


@mapper("Slice")
def _slice(g: Graph, node: Node) -> list[Node]:
    shape = list(g.shape(node.inputs[0], node))
    rank = len(shape)
    if "starts" in node.attrs:  # opset < 10
        starts, ends = _ints(node.attrs["starts"]), _ints(node.attrs["ends"])
        axes = _ints(node.attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = _ints(_const(g, node, 1, "starts").reshape(-1))
        ends = _ints(_const(g, node, 2, "ends").reshape(-1))
        ax = _opt_const(g, node, 3, "axes")
        axes = _ints(ax.reshape(-1)) if ax is not None else list(range(len(starts)))
        st = _opt_const(g, node, 4, "steps")
        steps = _ints(st.reshape(-1)) if st is not None else [1] * len(starts)
    ranges = []
    for s, e, a, step in zip(starts, ends, axes, steps):
        a = _axis(a, rank, node)
        if step != 1:
            raise Unsupported(f"step {step} (only step 1 slices are supported)")
        dim = shape[a]
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        s, e = min(max(s, 0), dim), min(max(e, 0), dim)
        if e <= s:
            raise Unsupported("an empty slice")
        if (s, e) != (0, dim):
            ranges.append((a, s, e))
    if not ranges:
        return _copy(g, node)
    nodes: list[Node] = []
    cur = node.inputs[0]
    for k, (a, s, e) in enumerate(ranges):
        last = k == len(ranges) - 1
        out = node.outputs[0] if last else g.fresh(f"{node.outputs[0]}.slice{k}")
        if not last:
            shp = list(g.shape(cur, node))
            shp[a] = e - s
            g.shapes[out] = tuple(shp)
        nodes += _slice_axis(g, node, cur, a, s, e, out, f"slice{k}")
        cur = out
    return nodes


@mapper("Gather")
def _gather(g: Graph, node: Node) -> list[Node]:
    if node.inputs[0] in g.consts:
        raise Unsupported("lookups in a constant table with run-time indices (embeddings)")
    idx = _const(g, node, 1, "the indices")
    shape = list(g.shape(node.inputs[0], node))
    axis = _axis(int(node.attrs.get("axis", 0)), len(shape), node)
    flat = [int(i) % shape[axis] for i in idx.reshape(-1)]
    if not flat or flat != list(range(flat[0], flat[0] + len(flat))) or idx.ndim > 1:
        raise Unsupported("indices that are not one index or a run of consecutive indices")
    if idx.ndim == 1:
        return _slice_axis(
            g, node, node.inputs[0], axis, flat[0], flat[0] + len(flat), node.outputs[0], "gather"
        )
    tmp = g.fresh(node.outputs[0] + ".keepdim")
    shp = list(shape)
    shp[axis] = 1
    g.shapes[tmp] = tuple(shp)
    nodes = _slice_axis(g, node, node.inputs[0], axis, flat[0], flat[0] + 1, tmp, "gather")
    out_shape = shape[:axis] + shape[axis + 1 :]
    nodes.append(spr("Reshape", [tmp], node.outputs[0], {"shape": out_shape}, node.name + ".squeeze"))
    return nodes


@mapper("Expand")
def _expand(g: Graph, node: Node) -> list[Node]:
    in_shape = g.shape(node.inputs[0], node)
    out_shape = g.shape(node.outputs[0], node)
    if tuple(in_shape) == tuple(out_shape):
        return _copy(g, node)
    # broadcasting against zeros of the target shape is an Expand
    zeros = _f32(g, node.name + ".zeros", np.zeros(out_shape, dtype=np.float32))
    return [spr("Add", [node.inputs[0], zeros], node.outputs[0], {}, node.name)]


# --------------------------------------------------------------------------- pooling, resize


def _pool_common(g: Graph, node: Node) -> dict[str, Any]:
    k = _ints(node.attrs["kernel_shape"])
    if len(k) != 2:
        raise Unsupported(f"{len(k)}-D pooling (only 2-D is supported)")
    s = _ints(node.attrs.get("strides", [1, 1]))
    d = _ints(node.attrs.get("dilations", [1, 1]))
    pads = _window_pads(g, node, k, s, d)
    return {
        "kernel_shape": k,
        "strides": s,
        "pads": pads,
        "ceil_mode": int(node.attrs.get("ceil_mode", 0)),
        "_dilations": d,
    }


@mapper("MaxPool")
def _maxpool(g: Graph, node: Node) -> list[Node]:
    _only_first_output(node, g, "Indices")
    attrs = _pool_common(g, node)
    attrs["dilations"] = attrs.pop("_dilations")
    return [spr("MaxPool", [node.inputs[0]], node.outputs[0], attrs, node.name)]


@mapper("AveragePool")
def _avgpool(g: Graph, node: Node) -> list[Node]:
    attrs = _pool_common(g, node)
    if attrs.pop("_dilations") != [1, 1]:
        raise Unsupported("dilations other than 1")
    attrs["count_include_pad"] = int(node.attrs.get("count_include_pad", 0))
    return [spr("AveragePool", [node.inputs[0]], node.outputs[0], attrs, node.name)]


@mapper("GlobalAveragePool")
def _gap(g: Graph, node: Node) -> list[Node]:
    return [spr("GlobalAveragePool", [node.inputs[0]], node.outputs[0], {}, node.name)]


_COORD_MODES = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"}
_NEAREST_MODES = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}


@mapper("Resize", "Upsample")
def _resize(g: Graph, node: Node) -> list[Node]:
    x_shape = g.shape(node.inputs[0], node)
    if len(x_shape) != 4:
        raise Unsupported(f"rank-{len(x_shape)} input (only NCHW images are resized)")
    mode = node.attrs.get("mode", "nearest")
    if mode in ("bilinear",):
        mode = "linear"
    if mode not in ("nearest", "linear"):
        raise Unsupported(f"mode {mode!r} (nearest and linear are supported)")
    legacy = node.op == "Upsample" or g.opset < 11  # Upsample and Resize-10: asymmetric mapping, scales only
    if legacy:
        coord = "asymmetric"
        nearest = "floor"  # Upsample/Resize-10 nearest takes floor(x / scale)
        if "scales" in node.attrs:
            scales: np.ndarray | None = np.asarray(node.attrs["scales"], dtype=np.float64)
        else:
            scales = _const(g, node, 1, "scales").astype(np.float64).reshape(-1)
        sizes = None
    else:
        coord = node.attrs.get("coordinate_transformation_mode", "half_pixel")
        nearest = node.attrs.get("nearest_mode", "round_prefer_floor")
        if coord == "tf_half_pixel_for_nn":
            raise Unsupported("coordinate_transformation_mode 'tf_half_pixel_for_nn'")
        if coord not in _COORD_MODES:
            raise Unsupported(f"coordinate_transformation_mode {coord!r}")
        if nearest not in _NEAREST_MODES:
            raise Unsupported(f"nearest_mode {nearest!r}")
        if int(node.attrs.get("antialias", 0)):
            raise Unsupported("antialias=1")
        if int(node.attrs.get("exclude_outside", 0)):
            raise Unsupported("exclude_outside=1")
        if node.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise Unsupported("keep_aspect_ratio_policy other than 'stretch'")
        scales = _opt_const(g, node, 2, "scales")
        sizes = _opt_const(g, node, 3, "sizes")
        if scales is not None and scales.size == 0:
            scales = None
        if sizes is not None and sizes.size == 0:
            sizes = None
        axes = node.attrs.get("axes")
        if axes is not None:
            axes = [int(a) % 4 for a in axes]
            full = np.ones(4) if sizes is None else np.array(x_shape, dtype=np.float64)
            vals = scales if scales is not None else sizes
            assert vals is not None
            for a, v in zip(axes, vals.reshape(-1)):
                full[a] = v
            if scales is not None:
                scales = full
            else:
                sizes = full.astype(np.int64)
    attrs: dict[str, Any] = {"mode": mode, "coordinate_transformation_mode": coord, "nearest_mode": nearest}
    if scales is not None:
        scales = scales.astype(np.float64).reshape(-1)
        if scales.size != 4 or scales[0] != 1 or scales[1] != 1:
            raise Unsupported(f"scales {scales.tolist()} (only the last two dims may be resized)")
        attrs["scales"] = [float(scales[2]), float(scales[3])]
    elif sizes is not None:
        sizes = sizes.reshape(-1)
        if sizes.size != 4 or sizes[0] != x_shape[0] or sizes[1] != x_shape[1]:
            raise Unsupported(f"sizes {sizes.tolist()} (only the last two dims may be resized)")
        attrs["sizes"] = [int(sizes[2]), int(sizes[3])]
    else:
        raise Unsupported("neither scales nor sizes is given")
    return [spr("Resize", [node.inputs[0]], node.outputs[0], attrs, node.name)]


# --------------------------------------------------------------------------- normalisation, reduction


@mapper("Softmax")
def _softmax(g: Graph, node: Node) -> list[Node]:
    shape = g.shape(node.inputs[0], node)
    rank = len(shape)
    if g.opset >= 13:
        axis = _axis(int(node.attrs.get("axis", -1)), rank, node)
        return [spr("Softmax", [node.inputs[0]], node.outputs[0], {"axis": axis - rank}, node.name)]
    # opset < 13: the input is coerced to 2-D [prod(d < axis), prod(d >= axis)]
    axis = _axis(int(node.attrs.get("axis", 1)), rank, node) if rank else 0
    if axis == rank - 1:
        return [spr("Softmax", [node.inputs[0]], node.outputs[0], {"axis": -1}, node.name)]
    rows = int(np.prod(shape[:axis]))
    cols = int(np.prod(shape[axis:]))
    flat = g.fresh(node.outputs[0] + ".2d")
    soft = g.fresh(node.outputs[0] + ".soft2d")
    g.shapes[flat] = g.shapes[soft] = (rows, cols)
    return [
        spr("Reshape", [node.inputs[0]], flat, {"shape": [rows, cols]}, node.name + ".to2d"),
        spr("Softmax", [flat], soft, {"axis": -1}, node.name),
        spr("Reshape", [soft], node.outputs[0], {"shape": list(shape)}, node.name + ".back"),
    ]


@mapper("ReduceMean")
def _reduce_mean(g: Graph, node: Node) -> list[Node]:
    rank = len(g.shape(node.inputs[0], node))
    try:
        axes = reduce_axes(g, node)
    except ValueError as e:
        raise Unsupported(str(e)) from None
    if not axes:
        if int(node.attrs.get("noop_with_empty_axes", 0)):
            return _copy(g, node)
        axes = list(range(rank))
    axes = sorted({_axis(a, rank, node) for a in axes})
    keep = int(node.attrs.get("keepdims", 1))
    return [spr("ReduceMean", [node.inputs[0]], node.outputs[0], {"axes": axes, "keepdims": keep}, node.name)]


@mapper("LayerNormalization")
def _layer_norm(g: Graph, node: Node) -> list[Node]:
    _only_first_output(node, g, "Mean/InvStdDev")
    shape = g.shape(node.inputs[0], node)
    rank = len(shape)
    axis = _axis(int(node.attrs.get("axis", -1)), rank, node)
    norm_shape = tuple(shape[axis:])
    gamma = np.broadcast_to(_const(g, node, 1, "Scale").astype(np.float32), norm_shape)
    ins = [node.inputs[0], _f32(g, node.name + ".gamma", gamma)]
    beta = _opt_const(g, node, 2, "B")
    ins.append(
        _f32(g, node.name + ".beta", np.broadcast_to(beta.astype(np.float32), norm_shape))
        if beta is not None
        else ""
    )
    attrs = {"axis": axis - rank, "epsilon": float(node.attrs.get("epsilon", 1e-5))}
    return [spr("LayerNormalization", ins, node.outputs[0], attrs, node.name)]
