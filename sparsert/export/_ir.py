"""The exporter's intermediate graph and the rewrites run on it before writing.

The graph holds ops already named as in the `.spr` op catalogue (docs/spr-format.md,
section 5); the passes only fold and fuse:

* :func:`fold_batchnorm` — ``BatchNorm`` whose input comes from a ``Conv2d`` /
  ``ConvTranspose2d`` / ``Linear`` read by nothing else is folded into that layer's weight
  and bias (``W' = W·γ/√(σ²+ε)``, ``B' = (B − μ)·γ/√(σ²+ε) + β``); zeros of a pruned weight
  stay zeros.
* :func:`fuse_residual` — ``Add(conv_out, r)`` becomes the ``R`` input of that ``Conv2d``.
* :func:`fuse_activation` — an element-wise activation after a ``Linear`` / ``Conv2d`` /
  ``ConvTranspose2d`` becomes the layer's ``activation`` attribute.

A layer's output is only fused when it feeds exactly one op and is not a graph output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

LAYER_OPS = ("Linear", "Conv2d", "ConvTranspose2d")

# op type -> (activation attribute, function of the op's attributes -> activation_params)
ACTIVATIONS: dict[str, tuple[str, Any]] = {
    "ReLU": ("relu", None),
    "ReLU6": ("relu6", None),
    "Clip": ("clip", lambda a: [a["min"], a["max"]]),
    "LeakyReLU": ("leaky_relu", lambda a: [a["alpha"]]),
    "Sigmoid": ("sigmoid", None),
    "HardSigmoid": ("hardsigmoid", lambda a: [a["alpha"], a["beta"]]),
    "HardSwish": ("hardswish", None),
    "SiLU": ("silu", None),
    "Tanh": ("tanh", None),
    "GELU": ("gelu", None),  # approximate="tanh" -> "gelu_tanh", see fuse_activation
}


@dataclass
class Const:
    """A constant; ``weight`` marks layer weights, whose storage the caller chooses."""

    array: np.ndarray
    weight: bool = False


@dataclass
class Op:
    op_type: str
    inputs: list[str | None]
    outputs: list[str]
    attrs: dict[str, Any]
    name: str
    where: str = ""


@dataclass
class Graph:
    inputs: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    consts: dict[str, Const] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # at the example input
    _taken: set[str] = field(default_factory=set)

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self._taken or name in self.consts or name in self.shapes:
            name = f"{base}_{i}"
            i += 1
        self._taken.add(name)
        return name

    def add_const(self, base: str, array: np.ndarray, weight: bool = False) -> str:
        name = self.fresh(base)
        self.consts[name] = Const(np.ascontiguousarray(array, dtype=np.float32), weight)
        return name

    def is_const(self, value: str | None) -> bool:
        return value is not None and value in self.consts

    def producers(self) -> dict[str, int]:
        return {out: i for i, op in enumerate(self.ops) for out in op.outputs}

    def readers(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for i, op in enumerate(self.ops):
            for v in op.inputs:
                if v:
                    found.setdefault(v, []).append(i)
        return found


def _sole_reader(graph: Graph, value: str, readers: dict[str, list[int]]) -> bool:
    return len(readers.get(value, [])) == 1 and value not in graph.outputs


def _rename_output(graph: Graph, op: Op, new_name: str) -> None:
    """``op`` now produces ``new_name`` (the name the removed follower produced)."""
    old = op.outputs[0]
    op.outputs[0] = new_name
    graph.shapes.pop(old, None)


def _plain_layer(op: Op) -> bool:
    has_residual = op.op_type == "Conv2d" and len(op.inputs) > 3 and bool(op.inputs[3])
    return op.op_type in LAYER_OPS and op.attrs.get("activation", "none") == "none" and not has_residual


def fold_batchnorm(graph: Graph) -> int:
    folded = 0
    while True:
        producers, readers = graph.producers(), graph.readers()
        for index, bn in enumerate(graph.ops):
            if bn.op_type != "BatchNorm":
                continue
            x = bn.inputs[0]
            assert x is not None
            if x not in producers or not _sole_reader(graph, x, readers):
                continue
            layer = graph.ops[producers[x]]
            if not _plain_layer(layer):
                continue
            if layer.op_type == "Linear" and len(graph.shapes[x]) != 2:
                continue  # BatchNorm1d over [N, C, L] normalizes axis 1, not the Linear's features
            gamma, beta, mean, var = (graph.consts[str(n)].array.astype(np.float64) for n in bn.inputs[1:5])
            scale = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
            w_name = str(layer.inputs[1])
            w = graph.consts[w_name].array.astype(np.float64)
            if layer.op_type == "ConvTranspose2d":
                groups = int(layer.attrs.get("groups", 1))
                cin, cout_g = w.shape[0], w.shape[1]
                w = (
                    w.reshape(groups, cin // groups, cout_g, *w.shape[2:])
                    * scale.reshape(groups, 1, cout_g, *([1] * (w.ndim - 2)))
                ).reshape(w.shape)
            else:
                w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
            bias = (
                np.zeros(scale.shape)
                if len(layer.inputs) < 3 or not layer.inputs[2]
                else (graph.consts[str(layer.inputs[2])].array.astype(np.float64))
            )
            bias = (bias - mean) * scale + beta
            inputs = list(layer.inputs) + [None] * (3 - len(layer.inputs))
            if readers.get(w_name) == [producers[x]]:  # not shared: keep the layer's weight name
                graph.consts[w_name].array = w.astype(np.float32)
            else:
                inputs[1] = graph.add_const(w_name, w, weight=graph.consts[w_name].weight)
            b_name = inputs[2]
            if b_name and readers.get(b_name) == [producers[x]]:
                graph.consts[b_name].array = bias.astype(np.float32)
            else:
                inputs[2] = graph.add_const(f"{w_name.rsplit('.', 1)[0]}.bias", bias)
            layer.inputs = inputs
            _rename_output(graph, layer, bn.outputs[0])
            layer.where = f"{layer.where} + {bn.where}"
            del graph.ops[index]
            folded += 1
            break
        else:
            return folded


def fuse_residual(graph: Graph) -> int:
    fused = 0
    while True:
        producers, readers = graph.producers(), graph.readers()
        for index, add in enumerate(graph.ops):
            if add.op_type != "Add" or any(graph.is_const(v) for v in add.inputs):
                continue
            a, b = str(add.inputs[0]), str(add.inputs[1])
            for out, other in ((a, b), (b, a)):
                if out not in producers or not _sole_reader(graph, out, readers) or out == other:
                    continue
                conv_index = producers[out]
                conv = graph.ops[conv_index]
                if conv.op_type != "Conv2d" or not _plain_layer(conv):
                    continue
                if graph.shapes.get(other) != graph.shapes.get(out):
                    continue  # R must have the output's shape exactly (no broadcasting)
                if other in producers and producers[other] > conv_index:
                    continue  # R must exist before the conv runs
                conv.inputs = (list(conv.inputs) + [None] * 3)[:3] + [other]
                _rename_output(graph, conv, add.outputs[0])
                conv.where = f"{conv.where} + {add.where}"
                del graph.ops[index]
                fused += 1
                break
            else:
                continue
            break
        else:
            return fused


def fuse_activation(graph: Graph) -> int:
    fused = 0
    while True:
        producers, readers = graph.producers(), graph.readers()
        for index, act in enumerate(graph.ops):
            if act.op_type not in ACTIVATIONS:
                continue
            x = str(act.inputs[0])
            if x not in producers or not _sole_reader(graph, x, readers):
                continue
            layer = graph.ops[producers[x]]
            if layer.op_type not in LAYER_OPS or layer.attrs.get("activation", "none") != "none":
                continue
            name, params = ACTIVATIONS[act.op_type]
            if act.op_type == "GELU" and act.attrs.get("approximate", "none") == "tanh":
                name = "gelu_tanh"
            layer.attrs["activation"] = name
            if params is not None:
                layer.attrs["activation_params"] = [float(p) for p in params(act.attrs)]
            _rename_output(graph, layer, act.outputs[0])
            layer.where = f"{layer.where} + {act.where}"
            del graph.ops[index]
            fused += 1
            break
        else:
            return fused


def optimize(graph: Graph) -> dict[str, int]:
    """Runs the rewrites in the order that lets each enable the next (BN, residual, activation)."""
    return {
        "batchnorm_folded": fold_batchnorm(graph),
        "residual_fused": fuse_residual(graph),
        "activation_fused": fuse_activation(graph),
    }
