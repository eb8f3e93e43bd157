"""Dead-channel removal: the ``remove_dead_channels`` pass of :mod:`sparsert.ir`.

A ``Conv`` (group 1) or ``Linear`` output channel whose weights are all zero is a constant:
its (folded) bias. Such channels are left by ``torch.nn.utils.prune.ln_structured``,
Torch-Pruning's mask mode or any framework's pruned ONNX export. The pass follows the layer's
output through ops that keep channels apart (element-wise activations, pooling, Flatten /
Reshape / Squeeze to 2-D) to the layers that read it, and removes a channel physically — from
the producer's weight and bias and from every reader's input channels — when the graph proves
the removal exact:

* the channel reaches every reader as a constant ``v`` (the activations are evaluated by the
  runtime itself on the constant, so every activation of ``sparsert.activations()`` works);
* ``v == 0``, or the reader sees ``v`` at every output position (a ``Linear``, a ``Conv``
  without padding), in which case ``v`` times the reader's weights moves into its bias.

Anything else on the way (a residual ``Add``, ``Concat``, a graph output, a normalisation
mixing channels, a grouped conv) keeps the channels: the pass never changes what the model
computes. At least one channel of each layer is kept, so no tensor becomes zero-sized.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sparsert.ir import Graph, Node, _bias, _set_const_input

# ops that map a constant channel to a constant channel, evaluated on the constant
_POOLS = ("MaxPool", "GlobalMaxPool", "GlobalAveragePool", "AveragePool")
_PASS_THROUGH = ("Identity", "Dropout")
_RESHAPES = ("Flatten", "Reshape", "Squeeze")


@dataclass
class _Reader:
    """A layer reading the traced tensor: its input columns per channel are ``stride`` wide."""

    node: Node
    stride: int
    values: dict[int, float | None] = field(default_factory=dict)  # channel -> value reaching it


@dataclass
class _Trace:
    readers: list[_Reader] = field(default_factory=list)
    path: list[tuple[Node, int]] = field(default_factory=list)  # ops on the way, with their stride
    tensors: list[tuple[str, int, int]] = field(default_factory=list)  # (tensor, axis, stride)


def _activation_ops() -> set[str]:
    import sparsert

    return {a["op_type"] for a in sparsert.activations() if a["op_type"]}


def _shape(g: Graph, t: str) -> tuple[int, ...] | None:
    s = g.shapes.get(t)
    return tuple(int(d) for d in s) if s is not None else None


def _const_ints(g: Graph, node: Node, attr: str, index: int) -> list[int] | None:
    if attr in node.attrs:
        return [int(v) for v in node.attrs[attr]]
    if len(node.inputs) > index and node.inputs[index] and g.is_const(node.inputs[index]):
        return [int(v) for v in np.asarray(g.consts[node.inputs[index]]).reshape(-1)]
    return None


def _to_2d(g: Graph, node: Node, axis: int, channels: int) -> int | None:
    """The per-channel column stride after a Flatten / Reshape / Squeeze of an ``[N, C, ...]``
    tensor to ``[N, C * S]``, or None when the op does something else."""
    shape = _shape(g, node.inputs[0])
    if axis != 1 or shape is None or len(shape) < 2 or shape[1] != channels or any(d < 0 for d in shape[2:]):
        return None
    spatial = math.prod(shape[2:])
    if node.op == "Flatten":
        return spatial if int(node.attrs.get("axis", 1)) == 1 else None
    if node.op == "Squeeze":
        axes = _const_ints(g, node, "axes", 1)
        if not axes or spatial != 1 or len(shape) - len(axes) != 2:
            return None
        return 1 if sorted(a % len(shape) for a in axes) == list(range(2, len(shape))) else None
    target = _const_ints(g, node, "shape", 1)
    if target is None or len(target) != 2 or int(node.attrs.get("allowzero", 0)):
        return None
    batch_ok = (
        target[0] == 0 or (shape[0] >= 0 and target[0] == shape[0]) or (target[0] == -1 and target[1] > 0)
    )
    return spatial if batch_ok and target[1] in (-1, channels * spatial) else None


def _trace(g: Graph, producer: Node, users: dict[str, list[Node]], acts: set[str]) -> _Trace | None:
    """Every way the producer's output reaches a layer; None when any way leads elsewhere."""
    axis = 1 if producer.op == "Conv" else -1
    channels = int(g.consts[producer.inputs[1]].shape[0])
    tr = _Trace()
    stack = [(producer.outputs[0], axis, 1)]
    while stack:
        t, ax, stride = stack.pop()
        if t in g.outputs or not users.get(t):
            return None
        tr.tensors.append((t, ax, stride))
        for n in users[t]:
            if not n.is_spr or n.inputs[0] != t or t in n.inputs[1:] or len([o for o in n.outputs if o]) != 1:
                return None
            if n.op in ("Linear", "Conv", "ConvTranspose") and g.is_const(n.inputs[1]):
                ok = (n.op == "Linear" and (ax == -1 or len(_shape(g, t) or ()) == 2)) or (
                    n.op != "Linear" and ax == 1 and stride == 1 and int(n.attrs.get("group", 1)) == 1
                )
                if not ok:
                    return None
                tr.readers.append(_Reader(n, stride))
            elif stride == 1 and (n.op in acts or n.op in _POOLS or n.op in _PASS_THROUGH):
                if n.op in _POOLS and ax != 1:
                    return None
                tr.path.append((n, stride))
                stack.append((n.outputs[0], ax, stride))
            elif n.op in _RESHAPES and stride == 1:
                s = _to_2d(g, n, ax, channels)
                if s is None:
                    return None
                tr.path.append((n, s))
                stack.append((n.outputs[0], -1, s))
            else:
                return None
    return tr if tr.readers else None


def _evaluate(node: Node, values: np.ndarray) -> np.ndarray:
    """The activation ``node`` applied to ``values`` by the runtime itself."""
    from sparsert.graph import GraphBuilder

    b = GraphBuilder("dead_channels")
    x = b.input("x", [1, int(values.size)])
    b.output(b.node(node.op, [x], node.attrs))
    out = b.load(threads=1).run(values.reshape(1, -1).astype(np.float32))
    return np.asarray(out, dtype=np.float64).reshape(-1)


def _pool_value(node: Node, v: float | None) -> float | None:
    """A constant channel through a pooling op: constant unless padding enters the window."""
    if v is None or node.op not in ("MaxPool", "AveragePool"):
        return v
    pads = [int(p) for p in node.attrs.get("pads", [])]
    if not any(pads):
        return v
    if node.op == "AveragePool" and int(node.attrs.get("count_include_pad", 0)) and v != 0.0:
        return None  # border windows average in the zero padding
    kernel = [int(k) for k in node.attrs.get("kernel_shape", [])]
    half = len(pads) // 2
    if node.op == "MaxPool" and (
        not kernel or any(p >= k for p, k in zip(pads[:half] + pads[half:], kernel * 2))
    ):
        return None  # a window wholly in the padding is -inf
    return v


def _propagate(
    g: Graph, tr: _Trace, start: dict[int, float], users: dict[str, list[Node]], acts: set[str]
) -> None:
    """The value each candidate channel has when it reaches each reader (None: not constant)."""
    chans = sorted(start)
    at: dict[str, np.ndarray] = {}
    first = tr.tensors[0][0]
    at[first] = np.array([start[c] for c in chans], dtype=np.float64)
    order = [t for t, _, _ in tr.tensors]  # depth-first order: producers before readers
    for t in order:
        vals = at[t]
        for n in users[t]:
            if n.op in ("Linear", "Conv", "ConvTranspose") and g.is_const(n.inputs[1]):
                reader = next(r for r in tr.readers if r.node is n)
                reader.values.update({c: (None if math.isnan(v) else float(v)) for c, v in zip(chans, vals)})
                continue
            if n.op in acts:
                finite = np.where(np.isnan(vals), 0.0, vals)
                out = _evaluate(n, finite)
                out[np.isnan(vals) | ~np.isfinite(out)] = np.nan
            elif n.op in _POOLS:
                out = np.array(
                    [
                        np.nan if (r := _pool_value(n, None if math.isnan(v) else v)) is None else r
                        for v in vals
                    ]
                )
            else:
                out = vals
            at[n.outputs[0]] = out


def _absorbs(reader: _Reader, v: float | None) -> bool:
    if v is None:
        return False
    if v == 0.0:
        return True
    n = reader.node
    return n.op == "Linear" or (n.op == "Conv" and not any(int(p) for p in n.attrs.get("pads", [])))


def _shrink_reader(g: Graph, reader: _Reader, removed: list[int], users: dict[str, list[Node]]) -> None:
    n = reader.node
    w = g.consts[n.inputs[1]].astype(np.float64)
    s = reader.stride
    if n.op == "ConvTranspose":
        keep = np.setdiff1d(np.arange(w.shape[0]), removed)
        _set_const_input(g, n, 1, w[keep], (n.name or "layer") + ".weight", users)
        return
    cols = np.concatenate([np.arange(c * s, (c + 1) * s) for c in removed])
    consts = {c: reader.values[c] for c in removed}
    if any(consts.values()):
        out = w.shape[0]
        shift = np.zeros(out)
        for c, v in consts.items():
            if v:
                block = w[:, c * s : (c + 1) * s] if n.op == "Linear" else w[:, c]
                shift += block.reshape(out, -1).sum(axis=1) * v
        _set_const_input(g, n, 2, _bias(g, n, out) + shift, (n.name or "layer") + ".bias", users)
    keep = np.setdiff1d(np.arange(w.shape[1]), cols)
    _set_const_input(g, n, 1, w[:, keep], (n.name or "layer") + ".weight", users)


def _shrink_path(g: Graph, tr: _Trace, n_removed: int) -> None:
    for node, stride in tr.path:
        if node.op == "Reshape":
            target = _const_ints(g, node, "shape", 1)
            if target is not None and target[1] > 0:
                new = [target[0], target[1] - n_removed * stride]
                if "shape" in node.attrs:
                    node.attrs["shape"] = new
                else:
                    node.inputs[1] = g.add_const(
                        (node.name or "reshape") + ".shape", np.array(new, dtype=np.int64)
                    )
    for t, axis, stride in tr.tensors:
        shape = g.shapes.get(t)
        if shape is not None and len(shape) >= 2 and shape[axis] >= 0:
            s = list(shape)
            s[axis] -= n_removed * stride
            g.shapes[t] = tuple(s)


def remove_dead_channels(g: Graph) -> int:
    """Removes provably dead output channels of Conv / Linear layers; returns how many."""
    users = g.consumers()
    acts: set[str] | None = None
    removed_total = 0
    for p in list(g.nodes):
        if not (p.is_spr and p.op in ("Conv", "Linear") and g.is_const(p.inputs[1])):
            continue
        if p.attrs.get("activation", "none") != "none" or (len(p.inputs) > 3 and p.inputs[3]):
            continue
        if p.op == "Conv" and int(p.attrs.get("group", 1)) != 1:
            continue
        if len([o for o in p.outputs if o]) != 1:
            continue
        w = g.consts[p.inputs[1]]
        if w.ndim < 2 or w.shape[0] < 2:
            continue
        zero_rows = np.flatnonzero(~np.any(w.reshape(w.shape[0], -1) != 0, axis=1))
        if zero_rows.size == 0:
            continue
        bias = _bias(g, p, w.shape[0])
        if acts is None:
            acts = _activation_ops()
        tr = _trace(g, p, users, acts)
        if tr is None:
            continue
        _propagate(g, tr, {int(c): float(bias[c]) for c in zero_rows}, users, acts)
        dead = [int(c) for c in zero_rows if all(_absorbs(r, r.values.get(int(c))) for r in tr.readers)]
        if len(dead) == w.shape[0]:
            dead = dead[1:]  # keep one channel: no zero-sized tensors
        if not dead:
            continue
        keep = np.setdiff1d(np.arange(w.shape[0]), dead)
        for r in tr.readers:
            _shrink_reader(g, r, dead, users)
        _set_const_input(g, p, 1, np.asarray(w)[keep], (p.name or "layer") + ".weight", users)
        if len(p.inputs) > 2 and p.inputs[2]:
            _set_const_input(g, p, 2, bias[keep], (p.name or "layer") + ".bias", users)
        _shrink_path(g, tr, len(dead))
        removed_total += len(dead)
    return removed_total
