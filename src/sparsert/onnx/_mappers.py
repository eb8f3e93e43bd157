"""One function per ONNX op type, turning a (folded) ONNX node into sparsert ops.

A mapper gets the graph and the node and returns the sparsert nodes that replace it
(``domain == "spr"``, op types and attributes of docs/spr-format.md section 5). Most
ONNX ops map one to one: the runtime implements ONNX semantics, takes shape-deciding
inputs (Reshape's shape, Slice's starts, Expand's shape...) as tensors evaluated while
planning, and keeps symbolic dims symbolic. A mapper raises :class:`Unsupported` with
a reason when this instance of the op cannot be expressed. Static shapes are used only
where an op needs them (``auto_pad=SAME``, ``num_outputs``) and the message says so.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from sparsert.onnx._ir import SPR, Graph, Node, runtime_dtype
from sparsert.onnx._patterns import clip_bounds, scalar


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


def find_mapper(op: str) -> Mapper | None:
    """The mapper of an ONNX op type: a registered one, or the element-wise activations of the
    runtime's own list (``sparsert.activations()``), which map one to one."""
    fn = MAPPERS.get(op)
    if fn is not None:
        return fn
    if op in _activation_ops():
        return _activation
    return None


_ACTIVATIONS: dict[str, dict[str, Any]] | None = None


def _activation_ops() -> dict[str, dict[str, Any]]:
    global _ACTIVATIONS
    if _ACTIVATIONS is None:
        import sparsert

        _ACTIVATIONS = {a["op_type"]: a for a in sparsert.activations() if a["op_type"]}
    return _ACTIVATIONS


def spr(op: str, inputs: list[str], outputs: list[str] | str, attrs: dict[str, Any] | None = None,
        name: str = "") -> Node:
    outs = [outputs] if isinstance(outputs, str) else list(outputs)
    return Node(op, list(inputs), outs, dict(attrs or {}), name, where=name, domain=SPR)


# --------------------------------------------------------------------------- helpers


def dtype_of(g: Graph, name: str) -> str | None:
    """The runtime dtype of a tensor, when known."""
    if name in g.consts:
        return {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32", np.dtype(np.int64): "int64",
                np.dtype(np.bool_): "bool"}.get(g.consts[name].dtype)
    t = g.elem_types.get(name)
    return runtime_dtype(t) if t is not None else None


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


def _input(node: Node, idx: int) -> str:
    return node.inputs[idx] if idx < len(node.inputs) else ""


def _ints(v: Any) -> list[int]:
    return [int(x) for x in v]


def _f32(g: Graph, base: str, arr: Any) -> str:
    return g.add_const(base, np.require(arr, dtype=np.float32, requirements="C"))


def _ints_const(g: Graph, base: str, values: Any) -> str:
    return g.add_const(base, np.asarray(values, dtype=np.int64).reshape(-1))


def _as_dtype(g: Graph, name: str, dtype: str | None, base: str) -> str:
    """A constant operand in the other operand's dtype (ONNX operands share a dtype; the
    converter may have stored a constant wider or narrower)."""
    if not name or name not in g.consts or dtype is None:
        return name
    arr = g.consts[name]
    want = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "bool": np.bool_}[dtype]
    if arr.dtype == want:
        return name
    return g.add_const(base, arr.astype(want))


def _rank(g: Graph, name: str, node: Node) -> int:
    shape = g.shapes.get(name)
    if name in g.consts:
        return g.consts[name].ndim
    if shape is None:
        raise Unsupported(f"the rank of {name!r} is unknown (shape inference could not follow the graph)")
    return len(shape)


def _static_shape(g: Graph, name: str, node: Node, why: str) -> tuple[int, ...]:
    shape = g.consts[name].shape if name in g.consts else g.shapes.get(name)
    if shape is None or any(d < 0 for d in shape):
        raise Unsupported(f"{why} needs the static shape of {name!r} (fix the input shapes with input_shapes=)")
    return tuple(shape)


def _only_first_output(node: Node, g: Graph, what: str) -> None:
    for o in node.outputs[1:]:
        if o and (o in g.read_names or o in g.outputs):
            raise Unsupported(f"its {what} output {o!r} is used")


def _outputs(g: Graph, node: Node) -> list[str]:
    """The node's outputs with fresh names for empty (unused optional) ones, trailing ones dropped."""
    outs = list(node.outputs)
    while outs and not outs[-1]:
        outs.pop()
    return [o or g.fresh(f"{node.name}.unused{k}") for k, o in enumerate(outs)]


def _copy(g: Graph, node: Node) -> list[Node]:
    return [spr("Identity", [node.inputs[0]], node.outputs[0], {}, node.name)]


# --------------------------------------------------------------------------- one-to-one ops

# ONNX op -> attributes the runtime op reads (others are dropped; each runtime op has ONNX semantics)
_PASSTHROUGH: dict[str, tuple[str, ...]] = {
    "Shape": ("start", "end"),
    "Size": (),
    "Gather": ("axis",),
    "GatherElements": ("axis",),
    "GatherND": ("batch_dims",),
    "Expand": (),
    "Tile": (),
    "Where": (),
    "Range": (),
    "CumSum": ("exclusive", "reverse"),
    "Not": (),
    "IsNaN": (),
    "IsInf": ("detect_positive", "detect_negative"),
    "Equal": (),
    "Less": (),
    "Greater": (),
    "LessOrEqual": (),
    "GreaterOrEqual": (),
    "And": (),
    "Or": (),
    "Xor": (),
    "Mod": ("fmod",),
    "PRelu": (),
    "LRN": ("size", "alpha", "beta", "bias"),
    "InstanceNormalization": ("epsilon",),
    "GlobalAveragePool": (),
    "GlobalMaxPool": (),
    "ArgMax": ("axis", "keepdims", "select_last_index"),
    "ArgMin": ("axis", "keepdims", "select_last_index"),
    "Flatten": ("axis",),
    "Concat": ("axis",),
}


def _passthrough(g: Graph, node: Node) -> list[Node]:
    keep = _PASSTHROUGH[node.op]
    attrs = {k: v for k, v in node.attrs.items() if k in keep}
    ins = list(node.inputs)
    # binary-style ops: constants in the other operand's dtype
    if node.op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod",
                   "PRelu", "Concat"):
        want = next((dtype_of(g, i) for i in ins if i and i not in g.consts), None)
        ins = [_as_dtype(g, i, want, f"{node.name}.{k}") for k, i in enumerate(ins)]
    if node.op == "Where":
        want = next((dtype_of(g, i) for i in ins[1:] if i and i not in g.consts), None)
        ins = [ins[0]] + [_as_dtype(g, i, want, f"{node.name}.{k}") for k, i in enumerate(ins[1:], 1)]
    if node.op == "Concat":
        ins = [i for i in ins if i]
        if len(ins) == 1:
            return [spr("Identity", ins, node.outputs[0], {}, node.name)]
    return [spr(node.op, ins, _outputs(g, node), attrs, node.name)]


for _op in _PASSTHROUGH:
    MAPPERS[_op] = _passthrough


def _activation(g: Graph, node: Node) -> list[Node]:
    info = _activation_ops()[node.op]
    attrs = {k: float(node.attrs[k]) for k in info["params"] if k in node.attrs}
    if node.op == "Gelu":
        approx = node.attrs.get("approximate", "none")
        if approx not in ("none", "tanh"):
            raise Unsupported(f"approximate={approx!r}")
        attrs["approximate"] = approx
    if node.op in ("Neg", "Abs", "Sign") and dtype_of(g, node.inputs[0]) in ("int32", "int64"):
        return _integer_unary(g, node)
    return [spr(node.op, [node.inputs[0]], node.outputs[0], attrs, node.name)]


def _integer_unary(g: Graph, node: Node) -> list[Node]:
    """Neg / Abs / Sign of integers (shape arithmetic) with the integer binary ops."""
    x, y = node.inputs[0], node.outputs[0]
    dtype = dtype_of(g, x)
    zero = g.add_const(node.name + ".zero", np.zeros(1, dtype=dtype))
    if node.op == "Neg":
        return [spr("Sub", [zero, x], y, {}, node.name)]
    neg = g.fresh(y + ".neg")
    if node.op == "Abs":
        return [spr("Sub", [zero, x], neg, {}, node.name + ".neg"), spr("Max", [x, neg], y, {}, node.name)]
    raise Unsupported("Sign of integers")


# --------------------------------------------------------------------------- convolution


def _same_pads(in_sp: tuple[int, ...], k: list[int], s: list[int], d: list[int], mode: str) -> list[int]:
    begins, ends = [], []
    for i in range(len(k)):
        out = -(-in_sp[i] // s[i])
        total = max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_sp[i])
        small, large = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else large)
        ends.append(large if mode == "SAME_UPPER" else small)
    return begins + ends


def _window_pads(g: Graph, node: Node, k: list[int], s: list[int], d: list[int]) -> list[int]:
    auto = node.attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        pads = _ints(node.attrs.get("pads", [0] * (2 * len(k))))
        if len(pads) != 2 * len(k):
            raise Unsupported(f"pads {pads} for a {len(k)}-D window")
        return pads
    if auto == "VALID":
        return [0] * (2 * len(k))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        shape = _static_shape(g, node.inputs[0], node, f"auto_pad={auto}")
        return _same_pads(tuple(shape[2:]), k, s, d, auto)
    raise Unsupported(f"auto_pad {auto!r}")


@mapper("Conv")
def _conv(g: Graph, node: Node) -> list[Node]:
    w = _const(g, node, 1, "the weight")
    b = _opt_const(g, node, 2, "the bias")
    if w.ndim not in (3, 4, 5):
        raise Unsupported(f"{w.ndim - 2}-D convolution (1-D to 3-D are supported)")
    k = list(w.shape[2:])
    strides = _ints(node.attrs.get("strides", [1] * len(k)))
    dil = _ints(node.attrs.get("dilations", [1] * len(k)))
    attrs = {"strides": strides, "pads": _window_pads(g, node, k, strides, dil), "dilations": dil,
             "group": int(node.attrs.get("group", 1))}
    ins = [node.inputs[0], _f32(g, node.name + ".weight", w)]
    ins.append(_f32(g, node.name + ".bias", b.reshape(-1)) if b is not None else "")
    return [spr("Conv", ins, node.outputs[0], attrs, node.name)]


@mapper("ConvTranspose")
def _conv_transpose(g: Graph, node: Node) -> list[Node]:
    w = _const(g, node, 1, "the weight")
    b = _opt_const(g, node, 2, "the bias")
    one_d = w.ndim == 3
    if w.ndim not in (3, 4):
        raise Unsupported(f"{w.ndim - 2}-D transposed convolution (1-D and 2-D are supported)")
    r = w.ndim - 2
    k = list(w.shape[2:])
    s = _ints(node.attrs.get("strides", [1] * r))
    d = _ints(node.attrs.get("dilations", [1] * r))
    out_pad = _ints(node.attrs.get("output_padding", [0] * r))
    auto = node.attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if "output_shape" in node.attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        in_sp = _static_shape(g, node.inputs[0], node, "output_shape / auto_pad=SAME")[2:]
        target = (_ints(node.attrs["output_shape"])[-r:] if "output_shape" in node.attrs
                  else [in_sp[i] * s[i] for i in range(r)])
        begins, ends = [], []
        for i in range(r):
            total = s[i] * (in_sp[i] - 1) + out_pad[i] + (k[i] - 1) * d[i] + 1 - target[i]
            if total < 0:
                out_pad[i] -= total
                total = 0
            begins.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
            ends.append(total - total // 2 if auto == "SAME_UPPER" else total // 2)
        pads = begins + ends
    elif auto == "VALID":
        pads = [0] * (2 * r)
    else:
        pads = _ints(node.attrs.get("pads", [0] * (2 * r)))
    if one_d:  # as 2-D of height 1
        w = w.reshape(w.shape[0], w.shape[1], 1, w.shape[2])
        s, d, out_pad, pads = [1, s[0]], [1, d[0]], [0, out_pad[0]], [0, pads[0], 0, pads[1]]
    attrs = {"strides": s, "pads": pads, "dilations": d, "group": int(node.attrs.get("group", 1)),
             "output_padding": out_pad}
    x = node.inputs[0]
    nodes: list[Node] = []
    axis2 = _ints_const(g, node.name + ".axis2", [2])
    if one_d:
        x2 = g.fresh(x + ".as2d")
        nodes.append(spr("Unsqueeze", [x, axis2], x2, {}, node.name + ".to2d"))
        x = x2
    ins = [x, _f32(g, node.name + ".weight", w)]
    ins.append(_f32(g, node.name + ".bias", b.reshape(-1)) if b is not None else "")
    if not one_d:
        nodes.append(spr("ConvTranspose", ins, node.outputs[0], attrs, node.name))
        return nodes
    y2 = g.fresh(node.outputs[0] + ".2d")
    nodes.append(spr("ConvTranspose", ins, y2, attrs, node.name))
    nodes.append(spr("Squeeze", [y2, axis2], node.outputs[0], {}, node.name + ".to1d"))
    return nodes


@mapper("BatchNormalization")
def _batchnorm(g: Graph, node: Node) -> list[Node]:
    if int(node.attrs.get("training_mode", 0)) != 0:
        raise Unsupported("training_mode=1 (export the model in eval mode)")
    if int(node.attrs.get("spatial", 1)) != 1:
        raise Unsupported("spatial=0")
    _only_first_output(node, g, "running-statistics")
    params = [_const(g, node, i, what).reshape(-1) for i, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var"))]
    ins = [node.inputs[0]] + [_f32(g, f"{node.name}.{n}", p) for n, p in zip(("scale", "bias", "mean", "var"), params)]
    return [spr("BatchNormalization", ins, node.outputs[0], {"epsilon": float(node.attrs.get("epsilon", 1e-5))},
                node.name)]


# --------------------------------------------------------------------------- linear algebra


def _scaled(g: Graph, node: Node, x: str, factor: float, tag: str, nodes: list[Node]) -> str:
    if factor == 1.0:
        return x
    out = g.fresh(f"{x}.{tag}")
    nodes.append(spr("Mul", [x, _f32(g, f"{node.name}.{tag}", [factor])], out, {}, f"{node.name}.{tag}"))
    return out


@mapper("Gemm")
def _gemm(g: Graph, node: Node) -> list[Node]:
    a, bname = node.inputs[0], node.inputs[1]
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    trans_a = int(node.attrs.get("transA", 0))
    trans_b = int(node.attrs.get("transB", 0))
    c = _input(node, 2)
    out = node.outputs[0]
    nodes: list[Node] = []
    if trans_a:
        at = g.fresh(a + ".T")
        nodes.append(spr("Transpose", [a], at, {"perm": [1, 0]}, node.name + ".transA"))
        a = at
    if bname in g.consts:
        bmat = g.consts[bname].astype(np.float32)
        w = (bmat if trans_b else bmat.T) * alpha  # Linear wants [N, K]
        n_out = w.shape[0]
        bias, extra = "", ""  # a C that is not a per-column bias is added after the Linear
        if c and c in g.consts:
            cv = g.consts[c].astype(np.float32) * beta
            if cv.size == 1 or (cv.size == n_out and cv.shape[-1] == n_out):
                bias = _f32(g, node.name + ".bias", np.broadcast_to(cv.reshape(-1), (n_out,)))
            else:
                extra = _f32(g, node.name + ".C", cv)
        elif c:
            extra = _scaled(g, node, c, beta, "beta", nodes)
        lin_out = g.fresh(out + ".ab") if extra else out
        nodes.append(spr("Linear", [a, _f32(g, node.name + ".weight", w), bias], lin_out, {}, node.name))
        if extra:
            nodes.append(spr("Add", [lin_out, extra], out, {}, node.name + ".addC"))
        return nodes
    b_in = bname
    if trans_b:
        b_in = g.fresh(bname + ".T")
        nodes.append(spr("Transpose", [bname], b_in, {"perm": [1, 0]}, node.name + ".transB"))
    cur = out if (alpha == 1.0 and not c) else g.fresh(out + ".ab")
    nodes.append(spr("MatMul", [a, b_in], cur, {}, node.name))
    if alpha != 1.0:
        nxt = out if not c else g.fresh(out + ".alpha")
        nodes.append(spr("Mul", [cur, _f32(g, node.name + ".alpha", [alpha])], nxt, {}, node.name + ".alpha"))
        cur = nxt
    if c:
        cin = _f32(g, node.name + ".C", g.consts[c] * beta) if c in g.consts else _scaled(g, node, c, beta, "beta", nodes)
        nodes.append(spr("Add", [cur, cin], out, {}, node.name + ".addC"))
    return nodes


@mapper("MatMul")
def _matmul(g: Graph, node: Node) -> list[Node]:
    a, b = node.inputs[0], node.inputs[1]
    if a in g.consts and b not in g.consts:
        # C = A_const @ B  ->  C^T = B^T @ A^T: a Linear on the transposed activation when 2-D
        raise Unsupported("a constant first operand (only the second may be a constant)")
    if b in g.consts:
        w = g.consts[b]
        if w.ndim == 2:
            return [spr("Linear", [a, _f32(g, node.name + ".weight", w.T), ""], node.outputs[0], {}, node.name)]
        if w.ndim == 1:  # [.., K] @ [K] -> [..]
            tmp = g.fresh(node.outputs[0] + ".col")
            return [spr("Linear", [a, _f32(g, node.name + ".weight", w.reshape(1, -1)), ""], tmp, {}, node.name),
                    spr("Squeeze", [tmp, _ints_const(g, node.name + ".axis", [-1])], node.outputs[0], {},
                        node.name + ".squeeze")]
        return [spr("MatMul", [a, _f32(g, node.name + ".B", w)], node.outputs[0], {}, node.name)]
    return [spr("MatMul", [a, b], node.outputs[0], {}, node.name)]  # numpy.matmul semantics, any ranks


# --------------------------------------------------------------------------- element-wise


@mapper("Clip")
def _clip(g: Graph, node: Node) -> list[Node]:
    x, y = node.inputs[0], node.outputs[0]
    bounds = clip_bounds(g, node)
    if bounds is None:  # run-time bounds: Min(Max(x, lo), hi)
        nodes, cur = [], x
        lo, hi = _input(node, 1), _input(node, 2)
        if lo:
            nxt = g.fresh(y + ".lo") if hi else y
            nodes.append(spr("Max", [cur, lo], nxt, {}, node.name + ".min"))
            cur = nxt
        if hi:
            nodes.append(spr("Min", [cur, hi], y, {}, node.name + ".max"))
        return nodes or _copy(g, node)
    lo_v, hi_v = bounds
    if dtype_of(g, x) in ("int32", "int64"):
        nodes, cur = [], x
        dtype = dtype_of(g, x)
        if lo_v != -math.inf:
            nxt = g.fresh(y + ".lo") if hi_v != math.inf else y
            nodes.append(spr("Max", [cur, g.add_const(node.name + ".min", np.array([lo_v]).astype(dtype))], nxt, {},
                             node.name + ".min"))
            cur = nxt
        if hi_v != math.inf:
            nodes.append(spr("Min", [cur, g.add_const(node.name + ".max", np.array([hi_v]).astype(dtype))], y, {},
                             node.name + ".max"))
        return nodes or _copy(g, node)
    if lo_v == 0.0 and hi_v == math.inf:
        return [spr("Relu", [x], y, {}, node.name)]
    attrs: dict[str, Any] = {}
    if lo_v != -math.inf:
        attrs["min"] = lo_v
    if hi_v != math.inf:
        attrs["max"] = hi_v
    return [spr("Clip", [x], y, attrs, node.name)]


def _binary_inputs(g: Graph, node: Node) -> list[str]:
    ins = [i for i in node.inputs if i]
    want = next((dtype_of(g, i) for i in ins if i not in g.consts), None)
    if want is None:
        want = "float32"
    return [_as_dtype(g, i, want, f"{node.name}.{k}") for k, i in enumerate(ins)]


@mapper("Add", "Sub", "Mul", "Div")
def _binary(g: Graph, node: Node) -> list[Node]:
    ins = _binary_inputs(g, node)
    nodes: list[Node] = []
    if int(node.attrs.get("broadcast", 0)) and "axis" in node.attrs and len(ins) == 2:
        # opset < 7 legacy broadcast: B's dims line up with A's from `axis` on (numpy aligns
        # them from the right), so B gets trailing ones
        a_rank, b_rank = _rank(g, ins[0], node), _rank(g, ins[1], node)
        axis = int(node.attrs["axis"])
        axis = axis + a_rank if axis < 0 else axis
        if not 0 <= axis <= a_rank - b_rank:
            raise Unsupported(f"legacy broadcast axis {node.attrs['axis']} does not fit ranks {a_rank} and {b_rank}")
        trailing = a_rank - axis - b_rank
        if trailing:
            b = g.fresh(node.name + ".bcast")
            nodes.append(spr("Unsqueeze", [ins[1]], b, {"axes": list(range(b_rank, b_rank + trailing))},
                             node.name + ".bcast"))
            ins = [ins[0], b]
    return nodes + [spr(node.op, ins, node.outputs[0], {}, node.name)]


@mapper("Pow")
def _pow(g: Graph, node: Node) -> list[Node]:
    x = node.inputs[0]
    e = scalar(g, node.inputs[1]) if node.inputs[1] in g.consts else None
    if e == 2.0:
        return [spr("Mul", [x, x], node.outputs[0], {}, node.name)]
    if e == 1.0:
        return _copy(g, node)
    if e == 0.5:
        return [spr("Sqrt", [x], node.outputs[0], {}, node.name)]
    if dtype_of(g, x) != "float32":
        raise Unsupported("Pow of integers")
    return [spr("Pow", [x, _as_dtype(g, node.inputs[1], "float32", node.name + ".e")], node.outputs[0], {}, node.name)]


@mapper("Sum", "Max", "Min", "Mean")
def _variadic(g: Graph, node: Node) -> list[Node]:
    ins = _binary_inputs(g, node)
    if not ins:
        raise Unsupported("no inputs")
    op = {"Sum": "Add", "Mean": "Add", "Max": "Max", "Min": "Min"}[node.op]
    if len(ins) == 1:
        return _copy(g, node)
    nodes = []
    cur = ins[0]
    last_out = node.outputs[0] if node.op != "Mean" else g.fresh(node.outputs[0] + ".sum")
    for k, nxt in enumerate(ins[1:]):
        last = k == len(ins) - 2
        out = last_out if last else g.fresh(node.outputs[0] + f".{k}")
        nodes.append(spr(op, [cur, nxt], out, {}, f"{node.name}.{k}"))
        cur = out
    if node.op == "Mean":
        nodes.append(spr("Mul", [cur, _f32(g, node.name + ".scale", [1.0 / len(ins)])], node.outputs[0], {},
                         node.name + ".mean"))
    return nodes


# --------------------------------------------------------------------------- shape and data movement


@mapper("Identity", "Dropout")
def _identity(g: Graph, node: Node) -> list[Node]:
    _only_first_output(node, g, "mask")
    return _copy(g, node)


_CAST_TO = {"float32": 1, "int32": 6, "int64": 7, "bool": 9}


@mapper("Cast", "CastLike")
def _cast(g: Graph, node: Node) -> list[Node]:
    if node.op == "CastLike":
        target = dtype_of(g, node.inputs[1])
    else:
        target = runtime_dtype(int(node.attrs.get("to", 0)))
    if target is None:
        raise Unsupported("casts to types the runtime has no dtype for (strings, complex)")
    if dtype_of(g, node.inputs[0]) == target:
        return _copy(g, node)
    return [spr("Cast", [node.inputs[0]], node.outputs[0], {"to": _CAST_TO[target]}, node.name)]


@mapper("Reshape")
def _reshape(g: Graph, node: Node) -> list[Node]:
    attrs = {"allowzero": int(node.attrs["allowzero"])} if int(node.attrs.get("allowzero", 0)) else {}
    return [spr("Reshape", [node.inputs[0], node.inputs[1]], node.outputs[0], attrs, node.name)]


@mapper("Squeeze", "Unsqueeze")
def _squeeze(g: Graph, node: Node) -> list[Node]:
    if "axes" in node.attrs:  # opset < 13
        return [spr(node.op, [node.inputs[0]], node.outputs[0], {"axes": _ints(node.attrs["axes"])}, node.name)]
    ins = [node.inputs[0]] + ([node.inputs[1]] if _input(node, 1) else [])
    return [spr(node.op, ins, node.outputs[0], {}, node.name)]


@mapper("Transpose")
def _transpose(g: Graph, node: Node) -> list[Node]:
    if "perm" in node.attrs:
        perm = _ints(node.attrs["perm"])
    else:
        perm = list(reversed(range(_rank(g, node.inputs[0], node))))
    return [spr("Transpose", [node.inputs[0]], node.outputs[0], {"perm": perm}, node.name)]


@mapper("Split")
def _split(g: Graph, node: Node) -> list[Node]:
    axis = int(node.attrs.get("axis", 0))
    outs = [o or g.fresh(f"{node.name}.unused{k}") for k, o in enumerate(node.outputs)]  # every part is an output
    attrs: dict[str, Any] = {"axis": axis}
    if "split" in node.attrs:
        attrs["split"] = _ints(node.attrs["split"])
    elif _input(node, 1):
        attrs["split"] = _ints(_const(g, node, 1, "split").reshape(-1))
    elif "num_outputs" in node.attrs:
        n = int(node.attrs["num_outputs"])
        shape = g.shapes.get(node.inputs[0])
        dim = shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else -1
        if dim >= 0:
            chunk = -(-dim // n)
            attrs["split"] = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
        # else: equal parts, which the runtime checks
    return [spr("Split", [node.inputs[0]], outs, attrs, node.name)]


@mapper("Slice")
def _slice(g: Graph, node: Node) -> list[Node]:
    if "starts" in node.attrs:  # opset < 10: attributes
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes = node.attrs.get("axes", list(range(len(starts))))
        ins = [node.inputs[0], _ints_const(g, node.name + ".starts", starts), _ints_const(g, node.name + ".ends", ends),
               _ints_const(g, node.name + ".axes", axes)]
        return [spr("Slice", ins, node.outputs[0], {}, node.name)]
    return [spr("Slice", list(node.inputs), node.outputs[0], {}, node.name)]


@mapper("Pad")
def _pad(g: Graph, node: Node) -> list[Node]:
    mode = node.attrs.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise Unsupported(f"mode {mode!r}")
    if "pads" in node.attrs:  # opset < 11
        ins = [node.inputs[0], _ints_const(g, node.name + ".pads", node.attrs["pads"])]
        value = float(node.attrs.get("value", 0.0))
        if value != 0.0:
            ins.append(g.add_const(node.name + ".value", np.array([value]).astype(dtype_of(g, node.inputs[0]) or "float32")))
        return [spr("Pad", ins, node.outputs[0], {"mode": mode}, node.name)]
    ins = list(node.inputs)
    if len(ins) > 2 and ins[2]:
        ins[2] = _as_dtype(g, ins[2], dtype_of(g, node.inputs[0]), node.name + ".value")
    return [spr("Pad", ins, node.outputs[0], {"mode": mode}, node.name)]


@mapper("ConstantOfShape")
def _constant_of_shape(g: Graph, node: Node) -> list[Node]:
    value = node.attrs.get("value")
    v, dtype = 0.0, "float32"
    if value is not None:
        arr = np.asarray(value).reshape(-1)
        dtype = runtime_dtype({"f": 1, "i": 7, "u": 7, "b": 9}.get(arr.dtype.kind, 1)) or "float32"
        if arr.dtype == np.int32 or arr.dtype in (np.int8, np.int16, np.uint8, np.uint16):
            dtype = "int32"
        v = float(arr[0]) if arr.size else 0.0
    return [spr("ConstantOfShape", [node.inputs[0]], node.outputs[0], {"value": v, "to": _CAST_TO[dtype]}, node.name)]


@mapper("DepthToSpace", "SpaceToDepth")
def _depth_space(g: Graph, node: Node) -> list[Node]:
    n, c, h, w = _static_shape(g, node.inputs[0], node, node.op)
    b = int(node.attrs["blocksize"])
    x, y = node.inputs[0], node.outputs[0]
    t1, t2 = g.fresh(y + ".split"), g.fresh(y + ".perm")
    if node.op == "DepthToSpace":
        if node.attrs.get("mode", "DCR") == "DCR":
            shape1, perm = [n, b, b, c // (b * b), h, w], [0, 3, 4, 1, 5, 2]
        else:
            shape1, perm = [n, c // (b * b), b, b, h, w], [0, 1, 4, 2, 5, 3]
        shape2 = [n, c // (b * b), h * b, w * b]
    else:
        shape1, perm, shape2 = [n, c, h // b, b, w // b, b], [0, 3, 5, 1, 2, 4], [n, c * b * b, h // b, w // b]
    return [
        spr("Reshape", [x, _ints_const(g, node.name + ".s1", shape1)], t1, {}, node.name + ".split"),
        spr("Transpose", [t1], t2, {"perm": perm}, node.name + ".perm"),
        spr("Reshape", [t2, _ints_const(g, node.name + ".s2", shape2)], y, {}, node.name),
    ]


# --------------------------------------------------------------------------- pooling, resize


def _pool_common(g: Graph, node: Node) -> dict[str, Any]:
    k = _ints(node.attrs["kernel_shape"])
    if not 1 <= len(k) <= 3:
        raise Unsupported(f"{len(k)}-D pooling (1-D to 3-D are supported)")
    s = _ints(node.attrs.get("strides", [1] * len(k)))
    d = _ints(node.attrs.get("dilations", [1] * len(k)))
    return {"kernel_shape": k, "strides": s, "pads": _window_pads(g, node, k, s, d),
            "ceil_mode": int(node.attrs.get("ceil_mode", 0)), "dilations": d}


@mapper("MaxPool")
def _maxpool(g: Graph, node: Node) -> list[Node]:
    _only_first_output(node, g, "Indices")
    if int(node.attrs.get("storage_order", 0)):
        raise Unsupported("storage_order=1")
    return [spr("MaxPool", [node.inputs[0]], node.outputs[0], _pool_common(g, node), node.name)]


@mapper("AveragePool")
def _avgpool(g: Graph, node: Node) -> list[Node]:
    attrs = _pool_common(g, node)
    if any(v != 1 for v in attrs.pop("dilations")):
        raise Unsupported("dilations other than 1")
    attrs["count_include_pad"] = int(node.attrs.get("count_include_pad", 0))
    return [spr("AveragePool", [node.inputs[0]], node.outputs[0], attrs, node.name)]


_COORD_MODES = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"}
_NEAREST_MODES = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}


@mapper("Resize", "Upsample")
def _resize(g: Graph, node: Node) -> list[Node]:
    rank = _rank(g, node.inputs[0], node)
    if rank < 3:
        raise Unsupported(f"rank-{rank} input (the last two dims of [N, C, H, W] are resized)")
    mode = node.attrs.get("mode", "nearest")
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear"):
        raise Unsupported(f"mode {mode!r} (nearest and linear are supported)")
    legacy = node.op == "Upsample" or g.opset < 11  # Upsample and Resize-10: asymmetric mapping, scales only
    if legacy:
        attrs: dict[str, Any] = {"mode": mode, "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
        scales = (np.asarray(node.attrs["scales"], dtype=np.float32) if "scales" in node.attrs
                  else None if _input(node, 1) not in g.consts else g.consts[_input(node, 1)])
        if scales is None:
            return [spr("Resize", [node.inputs[0], "", _input(node, 1)], node.outputs[0], attrs, node.name)]
        return [spr("Resize", [node.inputs[0], "", _f32(g, node.name + ".scales", scales)], node.outputs[0], attrs,
                    node.name)]
    coord = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest = node.attrs.get("nearest_mode", "round_prefer_floor")
    if coord not in _COORD_MODES:
        raise Unsupported(f"coordinate_transformation_mode {coord!r}")
    if nearest not in _NEAREST_MODES:
        raise Unsupported(f"nearest_mode {nearest!r}")
    for attr, ok in (("antialias", 0), ("exclude_outside", 0)):
        if int(node.attrs.get(attr, ok)) != ok:
            raise Unsupported(f"{attr}={node.attrs[attr]}")
    if node.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise Unsupported("keep_aspect_ratio_policy other than 'stretch'")
    attrs = {"mode": mode, "coordinate_transformation_mode": coord, "nearest_mode": nearest}
    scales, sizes = _input(node, 2), _input(node, 3)
    if scales in g.consts and g.consts[scales].size == 0:
        scales = ""
    if sizes in g.consts and g.consts[sizes].size == 0:
        sizes = ""
    axes = node.attrs.get("axes")
    if axes is not None:
        # scales / sizes for some axes only: expand to every dim (needs constants)
        axes = [int(a) % rank for a in axes]
        if scales:
            full = np.ones(rank, dtype=np.float32)
            full[axes] = _const(g, node, 2, "scales").reshape(-1)
            scales = _f32(g, node.name + ".scales", full)
        elif sizes:
            shape = _static_shape(g, node.inputs[0], node, "Resize with axes")
            full_i = np.array(shape, dtype=np.int64)
            full_i[axes] = _const(g, node, 3, "sizes").reshape(-1)
            sizes = _ints_const(g, node.name + ".sizes", full_i)
    if not scales and not sizes:
        raise Unsupported("neither scales nor sizes is given")
    if scales:
        return [spr("Resize", [node.inputs[0], "", _as_dtype(g, scales, "float32", node.name + ".scales")],
                    node.outputs[0], attrs, node.name)]
    return [spr("Resize", [node.inputs[0], "", "", sizes], node.outputs[0], attrs, node.name)]


# --------------------------------------------------------------------------- normalisation, reduction


@mapper("Softmax", "LogSoftmax")
def _softmax(g: Graph, node: Node) -> list[Node]:
    if g.opset >= 13:
        return [spr(node.op, [node.inputs[0]], node.outputs[0], {"axis": int(node.attrs.get("axis", -1))}, node.name)]
    # opset < 13: the input is coerced to 2-D [prod(d < axis), prod(d >= axis)]
    rank = _rank(g, node.inputs[0], node)
    axis = int(node.attrs.get("axis", 1)) % max(rank, 1)
    if axis == rank - 1:
        return [spr(node.op, [node.inputs[0]], node.outputs[0], {"axis": -1}, node.name)]
    x, y = node.inputs[0], node.outputs[0]
    flat, soft, shape = g.fresh(y + ".2d"), g.fresh(y + ".soft2d"), g.fresh(y + ".shape")
    return [
        spr("Flatten", [x], flat, {"axis": axis}, node.name + ".to2d"),
        spr(node.op, [flat], soft, {"axis": -1}, node.name),
        spr("Shape", [x], shape, {}, node.name + ".shape"),
        spr("Reshape", [soft, shape], y, {}, node.name + ".back"),
    ]


_REDUCE = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceSumSquare", "ReduceLogSumExp")


@mapper(*_REDUCE)
def _reduce(g: Graph, node: Node) -> list[Node]:
    attrs: dict[str, Any] = {"keepdims": int(node.attrs.get("keepdims", 1)),
                             "noop_with_empty_axes": int(node.attrs.get("noop_with_empty_axes", 0))}
    ins = [node.inputs[0]]
    if "axes" in node.attrs:
        attrs["axes"] = _ints(node.attrs["axes"])
    elif _input(node, 1):
        if node.inputs[1] in g.consts:
            attrs["axes"] = _ints(g.consts[node.inputs[1]].reshape(-1))
        else:
            ins.append(node.inputs[1])
    return [spr(node.op, ins, node.outputs[0], attrs, node.name)]


@mapper("LayerNormalization")
def _layer_norm(g: Graph, node: Node) -> list[Node]:
    _only_first_output(node, g, "Mean/InvStdDev")
    rank = _rank(g, node.inputs[0], node)
    axis = int(node.attrs.get("axis", -1)) % rank
    shape = g.shapes.get(node.inputs[0])
    gamma = _const(g, node, 1, "Scale").astype(np.float32)
    beta = _opt_const(g, node, 2, "B")
    norm_shape = tuple(shape[axis:]) if shape is not None and all(d >= 0 for d in shape[axis:]) else gamma.shape
    ins = [node.inputs[0], _f32(g, node.name + ".gamma", np.broadcast_to(gamma, norm_shape))]
    ins.append(_f32(g, node.name + ".beta", np.broadcast_to(beta.astype(np.float32), norm_shape)) if beta is not None else "")
    attrs = {"axis": axis - rank, "epsilon": float(node.attrs.get("epsilon", 1e-5))}
    return [spr("LayerNormalization", ins, node.outputs[0], attrs, node.name)]


# --------------------------------------------------------------------------- recurrent


@mapper("LSTM", "GRU")
def _rnn(g: Graph, node: Node) -> list[Node]:
    for i, what in ((1, "W"), (2, "R")):
        _const(g, node, i, what)
    if node.op == "LSTM" and _input(node, 7):
        p = g.consts.get(node.inputs[7])
        if p is None or np.any(p):
            raise Unsupported("peephole weights (P)")
    keep = ("direction", "hidden_size", "layout", "clip", "activations", "linear_before_reset", "input_forget")
    attrs = {k: v for k, v in node.attrs.items() if k in keep}
    if "activation_alpha" in node.attrs or "activation_beta" in node.attrs:
        raise Unsupported("activation_alpha / activation_beta")
    ins = [node.inputs[0]] + [_as_dtype(g, i, "float32", f"{node.name}.{k}") if i in g.consts and k != 4 else i
                              for k, i in enumerate(node.inputs[1:], 1)]
    return [spr(node.op, ins, _outputs(g, node), attrs, node.name)]
