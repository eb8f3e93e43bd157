"""Fusions on the sparsert-op graph, magnitude pruning, and topological order.

After mapping, every node is a sparsert op. These passes merge what the
runtime can do in one op:

* ``fold_batchnorm``: Conv2d / ConvTranspose2d / Linear followed by BatchNorm
  -> the same op with scaled weights and shifted bias (numpy, float64);
* ``fold_bias_add``: Linear / Conv2d / ConvTranspose2d followed by Add or Sub
  of a constant that varies along the output channel only -> bias;
* ``fold_residual``: Conv2d followed by Add of another activation of the same
  shape -> the Conv2d's residual input R;
* ``fold_activation``: any of the three followed by an activation -> the
  fused ``activation`` attribute.

A producer is merged with its consumer only when that consumer is its only
reader and its output is not a graph output.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from sparsert.onnx._ir import Graph, Node

_WEIGHTED = {"Conv2d", "ConvTranspose2d", "Linear"}
_FLT_MAX = float(np.finfo(np.float32).max)


def _single_reader(g: Graph, users: dict[str, list[Node]], tensor: str) -> Node | None:
    readers = users.get(tensor, [])
    if len(readers) != 1 or tensor in g.outputs:
        return None
    return readers[0]


def _plain(node: Node) -> bool:
    """A weighted op with nothing fused into it yet."""
    return (
        node.is_spr
        and node.op in _WEIGHTED
        and node.attrs.get("activation", "none") == "none"
        and (len(node.inputs) < 4 or not node.inputs[3])
    )


def _bias(g: Graph, node: Node, channels: int) -> np.ndarray:
    if len(node.inputs) > 2 and node.inputs[2]:
        return g.consts[node.inputs[2]].astype(np.float64)
    return np.zeros(channels)


def _set_bias(g: Graph, node: Node, bias: np.ndarray) -> None:
    while len(node.inputs) < 3:
        node.inputs.append("")
    node.inputs[2] = g.add_const(node.name + ".bias", bias.astype(np.float32))


def _out_channels(g: Graph, node: Node) -> int:
    w = g.consts[node.inputs[1]]
    if node.op == "ConvTranspose2d":
        return int(w.shape[1]) * int(node.attrs.get("groups", 1))
    return int(w.shape[0])


def _scale_weight(g: Graph, node: Node, s: np.ndarray) -> None:
    """Multiply output channel o of the weight by s[o]."""
    w = g.consts[node.inputs[1]].astype(np.float64)
    if node.op == "ConvTranspose2d":
        groups = int(node.attrs.get("groups", 1))
        c, per = w.shape[0], w.shape[1]
        w = (
            w.reshape(groups, c // groups, per, *w.shape[2:])
            * s.reshape(groups, 1, per, *([1] * (w.ndim - 2)))
        ).reshape(w.shape)
    else:
        w = w * s.reshape(-1, *([1] * (w.ndim - 1)))
    node.inputs[1] = g.add_const(node.name + ".weight", w.astype(np.float32))


def fold_batchnorm(g: Graph) -> None:
    users = g.consumers()
    producers = g.producers()
    for bn in [n for n in g.nodes if n.is_spr and n.op == "BatchNorm"]:
        prev = producers.get(bn.inputs[0])
        if prev is None or not _plain(prev) or _single_reader(g, users, bn.inputs[0]) is not bn:
            continue
        if prev.op == "Linear" and len(g.shape(bn.inputs[0])) != 2:
            continue  # BatchNorm's channel axis 1 is the Linear's output axis only for 2-D outputs
        scale, shift, mean, var = (g.consts[i].astype(np.float64) for i in bn.inputs[1:5])
        s = scale / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        channels = _out_channels(g, prev)
        if s.size != channels:
            continue
        _scale_weight(g, prev, s)
        _set_bias(g, prev, (_bias(g, prev, channels) - mean) * s + shift)
        prev.outputs = list(bn.outputs)
        g.nodes.remove(bn)


def _channel_vector(g: Graph, const: str, out_shape: tuple[int, ...], axis: int) -> np.ndarray | None:
    """The constant as a vector over ``axis`` if it broadcasts to ``out_shape`` and is constant elsewhere."""
    c = g.consts.get(const)
    if c is None or c.dtype.kind != "f" or c.ndim > len(out_shape):
        return None
    try:
        if np.broadcast_shapes(c.shape, out_shape) != tuple(out_shape):
            return None
    except ValueError:
        return None
    shape = (1,) * (len(out_shape) - c.ndim) + tuple(c.shape)
    c = c.reshape(shape).astype(np.float64)
    index = tuple(slice(None) if i == axis else slice(0, 1) for i in range(len(shape)))
    part = c[index]  # the values along `axis`; the constant must repeat them everywhere else
    if not np.array_equal(np.broadcast_to(part, shape), c):
        return None
    return np.broadcast_to(part.reshape(-1), (out_shape[axis],))


def fold_bias_add(g: Graph) -> None:
    changed = True
    while changed:
        changed = False
        users = g.consumers()
        producers = g.producers()
        for add in [n for n in g.nodes if n.is_spr and n.op in ("Add", "Sub")]:
            for k in (0, 1):
                t, c = add.inputs[k], add.inputs[1 - k]
                if add.op == "Sub" and k == 1:
                    continue  # c - t is not a bias of t
                prev = producers.get(t)
                if (
                    prev is None
                    or c not in g.consts
                    or not _plain(prev)
                    or _single_reader(g, users, t) is not add
                ):
                    continue
                out_shape = g.shapes.get(t)
                if (
                    out_shape is None
                    or add.outputs[0] not in g.shapes
                    or g.shapes[add.outputs[0]] != out_shape
                ):
                    continue
                axis = len(out_shape) - 1 if prev.op == "Linear" else 1
                vec = _channel_vector(g, c, out_shape, axis)
                if vec is None:
                    continue
                _set_bias(g, prev, _bias(g, prev, out_shape[axis]) + (vec if add.op == "Add" else -vec))
                prev.outputs = list(add.outputs)
                g.nodes.remove(add)
                changed = True
                break
            if changed:
                break


def fold_residual(g: Graph) -> None:
    users = g.consumers()
    producers = g.producers()
    for add in [n for n in g.nodes if n.is_spr and n.op == "Add"]:
        for k in (1, 0):  # prefer the later operand: in a ResNet block that is the conv branch
            t, r = add.inputs[k], add.inputs[1 - k]
            prev = producers.get(t)
            if prev is None or prev.op != "Conv2d" or not _plain(prev) or r in g.consts:
                continue
            if _single_reader(g, users, t) is not add:
                continue
            if r == t or g.shapes.get(r) is None or g.shapes.get(r) != g.shapes.get(t):
                continue
            while len(prev.inputs) < 3:
                prev.inputs.append("")
            prev.inputs.append(r)
            prev.outputs = list(add.outputs)
            g.nodes.remove(add)
            break


_ACTIVATIONS = {
    "ReLU": "relu",
    "ReLU6": "relu6",
    "Clip": "clip",
    "LeakyReLU": "leaky_relu",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hardsigmoid",
    "HardSwish": "hardswish",
    "SiLU": "silu",
    "Tanh": "tanh",
}


def _activation_attrs(act: Node) -> dict[str, Any] | None:
    if act.op == "GELU":
        return {"activation": "gelu_tanh" if act.attrs.get("approximate", "none") == "tanh" else "gelu"}
    name = _ACTIVATIONS.get(act.op)
    if name is None:
        return None
    attrs: dict[str, Any] = {"activation": name}
    if act.op == "Clip":
        attrs["activation_params"] = [
            float(act.attrs.get("min", -_FLT_MAX)),
            float(act.attrs.get("max", _FLT_MAX)),
        ]
    elif act.op == "LeakyReLU":
        attrs["activation_params"] = [float(act.attrs.get("alpha", 0.01))]
    elif act.op == "HardSigmoid":
        attrs["activation_params"] = [float(act.attrs.get("alpha", 0.2)), float(act.attrs.get("beta", 0.5))]
    return attrs


def fold_activation(g: Graph) -> None:
    users = g.consumers()
    for node in list(g.nodes):
        if not (node.is_spr and node.op in _WEIGHTED and node.attrs.get("activation", "none") == "none"):
            continue
        act = _single_reader(g, users, node.outputs[0])
        if act is None or not act.is_spr:
            continue
        attrs = _activation_attrs(act)
        if attrs is None:
            continue
        node.attrs.update(attrs)
        node.outputs = list(act.outputs)
        g.nodes.remove(act)
        users = g.consumers()


def fuse_all(g: Graph) -> None:
    fold_batchnorm(g)
    fold_bias_add(g)
    fold_residual(g)
    fold_activation(g)


# --------------------------------------------------------------------------- pruning


def prune_weights(g: Graph, spec: dict[str, Any]) -> list[str]:
    """Magnitude-prune Linear/Conv2d weights in place (per layer); returns the names of pruned nodes."""
    sparsity = float(spec["sparsity"])
    skip_first = bool(spec.get("skip_first", True))
    skip_depthwise = bool(spec.get("skip_depthwise", True))
    pruned: list[str] = []
    first_conv_seen = False
    for node in g.nodes:
        if not node.is_spr or node.op not in ("Linear", "Conv2d"):
            continue
        w = g.consts[node.inputs[1]]
        if node.op == "Conv2d":
            is_first = not first_conv_seen
            first_conv_seen = True
            if is_first and skip_first:
                continue
            if skip_depthwise and int(node.attrs.get("groups", 1)) > 1 and w.shape[1] == 1:
                continue
        k = int(round(sparsity * w.size))
        if k <= 0:
            continue
        flat = np.abs(w.reshape(-1))
        drop = np.argpartition(flat, k - 1)[:k] if k < w.size else np.arange(w.size)
        new = w.astype(np.float32).reshape(-1).copy()
        new[drop] = 0.0
        node.inputs[1] = g.add_const(node.name + ".weight", new.reshape(w.shape))
        pruned.append(node.name)
    if pruned:
        warnings.warn(
            f"magnitude-pruned {len(pruned)} layer(s) to {sparsity:.0%} sparsity at conversion; accuracy "
            "usually drops without fine-tuning (prune with sparsert.prune and fine-tune "
            "for deployable models)",
            stacklevel=3,
        )
    return pruned


# --------------------------------------------------------------------------- order


def topological_sort(g: Graph) -> None:
    """Order nodes so every input is defined before it is read (fusions can break the ONNX order)."""
    defined = set(g.consts) | set(g.inputs)
    pending = list(g.nodes)
    ordered: list[Node] = []
    while pending:
        rest = []
        for n in pending:
            if all(not i or i in defined for i in n.inputs):
                ordered.append(n)
                defined.update(n.outputs)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            names = ", ".join(n.name for n in rest[:5])
            raise ValueError(f"the graph has a cycle or reads undefined tensors (nodes {names})")
        pending = rest
    g.nodes = ordered
