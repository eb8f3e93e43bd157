"""Fusion of ONNX decompositions into single sparsert ops.

Exporters spell GELU, SiLU, HardSwish and LayerNorm as chains of primitive
ops (``Erf``, ``Pow``, ``Sqrt``... that the runtime does not have). A pattern
here is an expression tree over ONNX ops::

    ("Mul", ("Mul", "$x", ("Add", ("Erf", ("Div", "$x", SQRT2)), 1.0)), 0.5)

``"$x"`` binds a tensor (the same name must bind the same tensor), a float
matches a scalar constant (relative tolerance 1e-3), ``"#eps"`` captures any
scalar constant, and ``"Op@tag"`` captures the node for later checks. Add and
Mul match in either operand order. A match is replaced only when every
intermediate tensor is used by the matched nodes alone.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from sparsert.onnx._ir import SPR, Graph, Node

Pattern = Any
SQRT2 = math.sqrt(2.0)
INV_SQRT2 = 1.0 / SQRT2
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_COMMUTATIVE = {"Add", "Mul"}


class _Match:
    def __init__(self) -> None:
        self.vars: dict[str, str] = {}
        self.consts: dict[str, float] = {}
        self.nodes: dict[str, Node] = {}
        self.matched: list[Node] = []

    def copy(self) -> _Match:
        m = _Match()
        m.vars = dict(self.vars)
        m.consts = dict(self.consts)
        m.nodes = dict(self.nodes)
        m.matched = list(self.matched)
        return m


def scalar(g: Graph, name: str) -> float | None:
    """The value of a constant holding one element, else None."""
    arr = g.consts.get(name)
    if arr is None or arr.size != 1 or arr.dtype.kind not in "fiu":
        return None
    return float(arr.reshape(-1)[0])


def _match(g: Graph, producers: dict[str, Node], pat: Pattern, tensor: str, m: _Match) -> _Match | None:
    if isinstance(pat, str) and pat.startswith("$"):
        if tensor in g.consts:
            return None
        bound = m.vars.get(pat)
        if bound is None:
            m = m.copy()
            m.vars[pat] = tensor
            return m
        return m if bound == tensor else None
    if isinstance(pat, str) and pat.startswith("#"):
        v = scalar(g, tensor)
        if v is None:
            return None
        m = m.copy()
        m.consts[pat] = v
        return m
    if isinstance(pat, float):
        v = scalar(g, tensor)
        if v is None or not math.isclose(v, pat, rel_tol=1e-3, abs_tol=1e-6):
            return None
        return m
    op, *args = pat
    op, _, tag = op.partition("@")
    node = producers.get(tensor)
    if node is None or node.op != op or node.is_spr or node.outputs[0] != tensor:
        return None
    if any(n is node for n in m.matched):
        return None
    ins = [i for i in node.inputs]
    if len(ins) < len(args):
        return None
    orders = [list(range(len(args)))]
    if op in _COMMUTATIVE and len(args) == 2:
        orders.append([1, 0])
    for order in orders:
        cur: _Match | None = m.copy()
        assert cur is not None
        cur.matched.append(node)
        if tag:
            cur.nodes[tag] = node
        for k, a in zip(order, args):
            cur = _match(g, producers, a, ins[k], cur)
            if cur is None:
                break
        if cur is not None:
            return cur
    return None


def _private(g: Graph, m: _Match, root: Node, users: dict[str, list[Node]]) -> bool:
    """True when every tensor the match computes, except the root's, stays inside the match."""
    inside = {id(n) for n in m.matched}
    for n in m.matched:
        if n is root:
            continue
        for o in n.outputs:
            if o in g.outputs or any(id(u) not in inside for u in users.get(o, [])):
                return False
    return True


def _erf_gelu_patterns() -> list[Pattern]:
    erf_args = [("Div", "$x", SQRT2), ("Mul", "$x", INV_SQRT2)]
    pats = []
    for arg in erf_args:
        one_plus = ("Add", ("Erf", arg), 1.0)
        pats += [
            ("Mul", ("Mul", "$x", one_plus), 0.5),
            ("Mul", "$x", ("Mul", one_plus, 0.5)),
            ("Mul", ("Mul", "$x", 0.5), one_plus),
            ("Div", ("Mul", "$x", one_plus), 2.0),
        ]
    return pats


def _tanh_gelu_patterns() -> list[Pattern]:
    cubes = [("Pow", "$x", 3.0), ("Mul", "$x", ("Mul", "$x", "$x")), ("Mul", ("Mul", "$x", "$x"), "$x")]
    pats = []
    for cube in cubes:
        inner_sums = [("Add", "$x", ("Mul", cube, 0.044715))]
        for s in inner_sums:
            for inner in [("Mul", s, SQRT_2_OVER_PI)]:
                one_plus = ("Add", ("Tanh", inner), 1.0)
                pats += [
                    ("Mul", ("Mul", "$x", one_plus), 0.5),
                    ("Mul", "$x", ("Mul", one_plus, 0.5)),
                    ("Mul", ("Mul", "$x", 0.5), one_plus),
                ]
    return pats


def _hardswish_patterns() -> list[Pattern]:
    clip = ("Clip@clip", ("Add", "$x", 3.0))
    return [
        ("Mul", "$x", ("HardSigmoid@hs", "$x")),
        ("Div", ("Mul", "$x", clip), 6.0),
        ("Mul", "$x", ("Div", clip, 6.0)),
        ("Mul", ("Mul", "$x", clip), 1.0 / 6.0),
        ("Mul", "$x", ("Mul", clip, 1.0 / 6.0)),
    ]


def clip_bounds(g: Graph, node: Node) -> tuple[float, float] | None:
    """Clip's (min, max) across opsets (attributes before 11, inputs after); None if not constant."""
    if g.opset < 11 or ("min" in node.attrs or "max" in node.attrs):
        return float(node.attrs.get("min", -math.inf)), float(node.attrs.get("max", math.inf))
    lo, hi = -math.inf, math.inf
    if len(node.inputs) > 1 and node.inputs[1]:
        v = scalar(g, node.inputs[1])
        if v is None:
            return None
        lo = v
    if len(node.inputs) > 2 and node.inputs[2]:
        v = scalar(g, node.inputs[2])
        if v is None:
            return None
        hi = v
    return lo, hi


def _hardswish_ok(g: Graph, m: _Match) -> bool:
    if "hs" in m.nodes:
        a = m.nodes["hs"].attrs
        return math.isclose(float(a.get("alpha", 0.2)), 1 / 6, rel_tol=1e-3) and math.isclose(
            float(a.get("beta", 0.5)), 0.5, rel_tol=1e-3
        )
    b = clip_bounds(g, m.nodes["clip"])
    return b is not None and b[0] == 0.0 and math.isclose(b[1], 6.0)


def _layernorm_patterns() -> list[Pattern]:
    d = "$d"
    squares = [("Pow", d, 2.0), ("Mul", d, d)]
    pats = []
    for sq in squares:
        var = ("ReduceMean@var", sq)
        pats.append(("Div", d, ("Sqrt", ("Add", var, "#eps"))))
        pats.append(("Mul", d, ("Reciprocal", ("Sqrt", ("Add", var, "#eps")))))
    return pats


def reduce_axes(g: Graph, node: Node) -> list[int] | None:
    """ReduceMean's axes across opsets (attribute before 18, input after); None = all axes."""
    if "axes" in node.attrs:
        return [int(a) for a in node.attrs["axes"]]
    if len(node.inputs) > 1 and node.inputs[1]:
        arr = g.consts.get(node.inputs[1])
        if arr is None:
            raise ValueError(f"{node.describe()}: axes must be constant")
        return [int(a) for a in arr.reshape(-1)]
    return None


def _fuse(
    g: Graph,
    patterns: list[Pattern],
    anchor_ops: set[str],
    build: Callable[[_Match, Node], list[Node] | None],
) -> int:
    # One scan finds every non-overlapping match; all are replaced at once, and the scan
    # repeats only while it finds some (a replacement can complete an outer pattern). Each
    # round is linear in the graph's size.
    count = 0
    while True:
        producers = g.producers()
        users = g.consumers()
        claimed: set[int] = set()
        replace: dict[int, list[Node]] = {}
        for root in g.nodes:
            if root.op not in anchor_ops or root.is_spr or id(root) in claimed:
                continue
            for pat in patterns:
                m = _match(g, producers, pat, root.outputs[0], _Match())
                if m is None or any(id(n) in claimed for n in m.matched) or not _private(g, m, root, users):
                    continue
                new = build(m, root)
                if new is None:
                    continue
                claimed.update(id(n) for n in m.matched)
                replace[id(root)] = new
                break
        if not replace:
            return count
        nodes: list[Node] = []
        for n in g.nodes:
            if id(n) in replace:
                nodes += replace[id(n)]
            elif id(n) not in claimed:
                nodes.append(n)
        g.nodes = nodes
        count += len(replace)


def _spr(g: Graph, op: str, inputs: list[str], output: str, attrs: dict[str, Any], like: Node) -> Node:
    return Node(op, inputs, [output], attrs, like.name, where=like.name, domain=SPR)


def fuse_patterns(g: Graph) -> None:
    def gelu(approx: str) -> Callable[[_Match, Node], list[Node]]:
        def build(m: _Match, root: Node) -> list[Node]:
            return [_spr(g, "Gelu", [m.vars["$x"]], root.outputs[0], {"approximate": approx}, root)]

        return build

    _fuse(g, _erf_gelu_patterns(), {"Mul", "Div"}, gelu("none"))
    _fuse(g, _tanh_gelu_patterns(), {"Mul"}, gelu("tanh"))

    def hardswish(m: _Match, root: Node) -> list[Node] | None:
        if not _hardswish_ok(g, m):
            return None
        return [_spr(g, "HardSwish", [m.vars["$x"]], root.outputs[0], {}, root)]

    _fuse(g, _hardswish_patterns(), {"Mul", "Div"}, hardswish)

    def silu(m: _Match, root: Node) -> list[Node]:
        return [_spr(g, "Silu", [m.vars["$x"]], root.outputs[0], {}, root)]

    _fuse(g, [("Mul", "$x", ("Sigmoid", "$x"))], {"Mul"}, silu)
    _fuse_layernorm(g)
    _fuse_pad_into_conv(g)


def _pad_amounts(g: Graph, pad: Node) -> list[int] | None:
    """Zero-padding amounts [begin..., end...] of a constant-mode Pad, or None."""
    if pad.attrs.get("mode", "constant") != "constant":
        return None
    if "pads" in pad.attrs:  # opset < 11
        pads = [int(p) for p in pad.attrs["pads"]]
        value = float(pad.attrs.get("value", 0.0))
    else:
        arr = g.consts.get(pad.inputs[1]) if len(pad.inputs) > 1 else None
        if arr is None:
            return None
        pads = [int(p) for p in arr.reshape(-1)]
        value = 0.0
        if len(pad.inputs) > 2 and pad.inputs[2]:
            v = scalar(g, pad.inputs[2])
            if v is None:
                return None
            value = v
        if len(pad.inputs) > 3 and pad.inputs[3]:
            return None  # opset 18 axes: rare, not folded
    if value != 0.0 or any(p < 0 for p in pads):
        return None
    return pads


def _fuse_pad_into_conv(g: Graph) -> None:
    """Pad(x, zeros on H and W) -> Conv: the padding goes into the Conv's pads (tf2onnx writes this)."""
    users = g.consumers()
    producers = g.producers()
    for conv in [n for n in g.nodes if n.op == "Conv" and not n.is_spr]:
        pad = producers.get(conv.inputs[0])
        if pad is None or pad.op != "Pad" or pad.is_spr or pad.outputs[0] in g.outputs:
            continue
        if len(users.get(pad.outputs[0], [])) != 1:
            continue
        amounts = _pad_amounts(g, pad)
        if amounts is None or len(amounts) != 8 or any(amounts[i] for i in (0, 1, 4, 5)):
            continue
        if (conv.attrs.get("auto_pad", "NOTSET") or "NOTSET") not in ("NOTSET", "VALID"):
            continue
        own = (
            [int(p) for p in conv.attrs.get("pads", [0, 0, 0, 0])]
            if conv.attrs.get("auto_pad", "NOTSET") in ("NOTSET", "")
            else [0, 0, 0, 0]
        )
        if len(own) != 4:
            continue
        conv.attrs["pads"] = [
            own[0] + amounts[2],
            own[1] + amounts[3],
            own[2] + amounts[6],
            own[3] + amounts[7],
        ]
        conv.attrs["auto_pad"] = "NOTSET"
        conv.inputs[0] = pad.inputs[0]
        g.nodes.remove(pad)


def _fuse_layernorm(g: Graph) -> None:
    # d = x - mean(x) is matched first (it is shared by the numerator and the variance)
    def build(m: _Match, root: Node) -> list[Node] | None:
        producers = g.producers()
        sub = producers.get(m.vars["$d"])
        if sub is None or sub.op != "Sub" or sub.is_spr:
            return None
        mean = producers.get(sub.inputs[1])
        if mean is None or mean.op != "ReduceMean" or mean.inputs[0] != sub.inputs[0]:
            return None
        x = sub.inputs[0]
        if x not in g.shapes:
            return None
        rank = len(g.shapes[x])
        var = m.nodes["var"]
        try:
            ax1, ax2 = reduce_axes(g, mean), reduce_axes(g, var)
        except ValueError:
            return None
        if ax1 is None or ax2 is None:
            return None
        ax1 = sorted(a % rank for a in ax1)
        ax2 = sorted(a % rank for a in ax2)
        if ax1 != ax2 or ax1 != list(range(ax1[0], rank)):
            return None
        if int(mean.attrs.get("keepdims", 1)) != 1 or int(var.attrs.get("keepdims", 1)) != 1:
            return None
        users = g.consumers()
        # sub and mean must be private to the match too
        inside = {id(n) for n in m.matched} | {id(sub), id(mean)}
        for n in (sub, mean):
            for o in n.outputs:
                if o in g.outputs or any(id(u) not in inside for u in users.get(o, [])):
                    return None
        m.matched += [sub, mean]
        axis = ax1[0] - rank
        return [
            _spr(
                g,
                "LayerNormalization",
                [x, "", ""],
                root.outputs[0],
                {"axis": axis, "epsilon": m.consts["#eps"]},
                root,
            )
        ]

    _fuse(g, _layernorm_patterns(), {"Div", "Mul"}, build)
    _absorb_layernorm_affine(g)


def _affine_param(g: Graph, name: str, x_shape: tuple[int, ...], axis: int) -> np.ndarray | None:
    """A constant that broadcasts over ``x_shape`` (dims -1 = any size) and varies only over the
    normalized dims ``axis..`` (which must be static), as an array of those dims."""
    arr = g.consts.get(name)
    if arr is None or arr.dtype.kind != "f" or arr.ndim > len(x_shape):
        return None
    rank = len(x_shape)
    lead = rank + axis
    norm = x_shape[lead:]
    if any(d < 0 for d in norm):
        return None
    shape = (1,) * (rank - arr.ndim) + tuple(arr.shape)
    if any(d != 1 for d in shape[:lead]):
        return None
    if any(p != 1 and p != n for p, n in zip(shape[lead:], norm)):
        return None
    return np.ascontiguousarray(np.broadcast_to(arr.reshape(shape[lead:]), norm), dtype=np.float32)


def _absorb_layernorm_affine(g: Graph) -> None:
    """LayerNorm(x) * gamma + beta -> LayerNorm(x, gamma, beta)."""
    all_users = g.consumers()  # kept current below: absorbing a Mul/Add only moves outputs
    removed: set[int] = set()
    for ln in [n for n in g.nodes if n.is_spr and n.op == "LayerNormalization"]:
        x_shape = g.shapes.get(ln.inputs[0])
        if x_shape is None:
            continue
        axis = int(ln.attrs["axis"])
        for slot, op in ((1, "Mul"), (2, "Add")):
            if ln.inputs[slot]:
                continue
            out = ln.outputs[0]
            users = all_users.get(out, [])
            if len(users) != 1 or out in g.outputs:
                break
            nxt = users[0]
            if nxt.op != op or nxt.is_spr or len(nxt.inputs) != 2:
                break
            other = nxt.inputs[1] if nxt.inputs[0] == out else nxt.inputs[0]
            param = _affine_param(g, other, x_shape, axis)
            if param is None:
                break
            if slot == 2 and not ln.inputs[1]:
                ln.inputs[1] = g.add_const(ln.name + ".gamma", np.ones_like(param))
            ln.inputs[slot] = g.add_const(ln.name + (".gamma" if slot == 1 else ".beta"), param)
            ln.outputs = list(nxt.outputs)
            removed.add(id(nxt))
    g.nodes = [n for n in g.nodes if id(n) not in removed]
