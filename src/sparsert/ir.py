"""The one intermediate graph of the frontends, its weight-rewriting passes, and emission.

Both frontends — the PyTorch exporter (:mod:`sparsert.exporter`) and the ONNX
converter (:mod:`sparsert.onnx`) — lower their input into a :class:`Graph` of ops
named as in the ``.spr`` op catalogue (docs/spr-format.md, section 5), run the
passes of :data:`PASSES` on it, and :func:`emit` it through
:class:`sparsert.GraphBuilder`. The passes here are the rewrites that change
weights and so must happen before writing (the file gets smaller):

* ``fold_batchnorm`` — a ``BatchNormalization`` whose input is a ``Conv`` /
  ``ConvTranspose`` / ``Linear`` read by nothing else is folded into that layer's
  weight and bias (``W' = W·γ/√(σ²+ε)``, ``B' = (B − μ)·γ/√(σ²+ε) + β``); zeros of a
  pruned weight stay zeros.
* ``fold_bias`` — ``Add`` / ``Sub`` of a constant that varies along the layer's
  output channels only becomes the layer's bias (``MatMul`` + ``Add`` exports).
* ``remove_dead_channels`` — output channels of a ``Conv`` / ``Linear`` whose weights
  are all zero (left by any pruning tool) are removed physically, with the readers'
  input channels, when the graph proves the result unchanged (:mod:`sparsert._channels`).

Fusing residual adds and activations into layers is the loader's job
(``csrc/runtime/passes.cc``): the frontends never do it, so each rule exists
once. A layer's output is only folded when it feeds exactly one op and is not a
graph output.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LAYER_OPS = ("Linear", "Conv", "ConvTranspose")
# Weights the exporters may store sparse: input 1 of these ops.
SPARSE_WEIGHT_OPS = ("Linear", "Conv")


@dataclass
class Node:
    """One op. ``inputs`` holds ``""`` for an absent optional input; ``where`` says where it came
    from (a module path, an ONNX node name) for messages."""

    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    where: str = ""
    domain: str = "spr"  # "spr" = a catalogue op; anything else is a frontend op still to map

    @property
    def is_spr(self) -> bool:
        return self.domain == "spr"

    def describe(self) -> str:
        return f"{self.op} node {self.name!r}"


@dataclass
class Input:
    """A graph input: ``-1`` dims are given at run time; ``dim_names`` names them."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str = "float32"
    dim_names: tuple[str, ...] = ()


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    graph_inputs: list[Input] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    # Known shapes (-1 for dims only known at run time) and dtypes of tensors.
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    _counter: int = 0
    _taken: set[str] = field(default_factory=set)

    # -- names ----------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """A tensor name no tensor of the graph uses."""
        name = base
        while name in self._taken or name in self.consts or name in self.shapes:
            self._counter += 1
            name = f"{base}__{self._counter}"
        self._taken.add(name)
        return name

    def add_const(self, base: str, array: Any) -> str:
        name = self.fresh(base)
        self.consts[name] = np.asarray(array)
        return name

    def is_const(self, name: str | None) -> bool:
        return bool(name) and name in self.consts

    # -- structure ------------------------------------------------------------
    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs if o}

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    users.setdefault(i, []).append(n)
        return users

    def sole_reader(self, tensor: str, users: dict[str, list[Node]]) -> Node | None:
        readers = users.get(tensor, [])
        if len(readers) != 1 or tensor in self.outputs:
            return None
        return readers[0]

    def replace_uses(self, old: str, new: str) -> None:
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def remove_dead(self) -> None:
        """Drop nodes none of whose outputs reach a graph output, and unused constants."""
        live = set(self.outputs)
        kept: list[Node] = []
        for n in reversed(self.nodes):
            if any(o in live for o in n.outputs):
                kept.append(n)
                live.update(i for i in n.inputs if i)
        kept.reverse()
        self.nodes = kept
        self.consts = {k: v for k, v in self.consts.items() if k in live}

    def topological_sort(self) -> None:
        """Order nodes so every input is defined before it is read (Kahn's algorithm: linear)."""
        producer: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            for o in n.outputs:
                producer[o] = i
        waiting = [0] * len(self.nodes)
        readers: dict[int, list[int]] = {}
        for i, n in enumerate(self.nodes):
            deps = {producer[t] for t in n.inputs if t and t in producer and producer[t] != i}
            waiting[i] = len(deps)
            for d in deps:
                readers.setdefault(d, []).append(i)
        ready = deque(i for i, w in enumerate(waiting) if w == 0)
        order: list[int] = []
        while ready:
            i = ready.popleft()
            order.append(i)
            for r in readers.get(i, []):
                waiting[r] -= 1
                if waiting[r] == 0:
                    ready.append(r)
        if len(order) != len(self.nodes):
            stuck = [self.nodes[i].name for i in range(len(self.nodes)) if waiting[i] > 0][:5]
            raise ValueError(f"the graph has a cycle (nodes {', '.join(stuck)})")
        self.nodes = [self.nodes[i] for i in order]


# --------------------------------------------------------------------------- passes


def _plain_layer(node: Node) -> bool:
    """A weighted op with nothing folded or fused into it yet."""
    return (
        node.is_spr
        and node.op in LAYER_OPS
        and node.attrs.get("activation", "none") == "none"
        and (len(node.inputs) < 4 or not node.inputs[3])
    )


def out_channels(g: Graph, node: Node) -> int:
    w = g.consts[node.inputs[1]]
    if node.op == "ConvTranspose":
        return int(w.shape[1]) * int(node.attrs.get("group", 1))
    return int(w.shape[0])


def _bias(g: Graph, node: Node, channels: int) -> np.ndarray:
    if len(node.inputs) > 2 and node.inputs[2]:
        return g.consts[node.inputs[2]].astype(np.float64)
    return np.zeros(channels)


def _set_const_input(g: Graph, node: Node, index: int, array: np.ndarray, base: str,
                     users: dict[str, list[Node]]) -> None:
    """Input ``index`` of ``node`` becomes ``array``: in place when only this node reads the old
    constant (names stay), else as a new constant."""
    while len(node.inputs) <= index:
        node.inputs.append("")
    old = node.inputs[index]
    if old and old in g.consts and [id(n) for n in users.get(old, [])] == [id(node)]:
        g.consts[old] = array.astype(np.float32)
    else:
        new = node.inputs[index] = g.add_const(base, array.astype(np.float32))
        if old:
            users[old] = [n for n in users.get(old, []) if n is not node]
        users[new] = [node]


def _absorb(prev: Node, node: Node, users: dict[str, list[Node]], producers: dict[str, Node],
            removed: set[int]) -> None:
    """``node`` folds into ``prev`` (whose output only it read): ``prev`` takes its outputs.
    Keeps ``users`` and ``producers`` current, so a pass stays linear in the graph's size."""
    for i in node.inputs:
        if i in users:
            users[i] = [n for n in users[i] if n is not node]
    for o in prev.outputs:
        producers.pop(o, None)
    prev.outputs = list(node.outputs)
    for o in prev.outputs:
        if o:
            producers[o] = prev
    prev.where = f"{prev.where} + {node.where}".strip(" +")
    removed.add(id(node))


def _scale_weight(g: Graph, node: Node, s: np.ndarray, users: dict[str, list[Node]]) -> None:
    """Multiply output channel o of the layer's weight by s[o]."""
    w = g.consts[node.inputs[1]].astype(np.float64)
    if node.op == "ConvTranspose":
        groups = int(node.attrs.get("group", 1))
        c, per = w.shape[0], w.shape[1]
        w = (w.reshape(groups, c // groups, per, *w.shape[2:])
             * s.reshape(groups, 1, per, *([1] * (w.ndim - 2)))).reshape(w.shape)
    else:
        w = w * s.reshape(-1, *([1] * (w.ndim - 1)))
    _set_const_input(g, node, 1, w, (node.name or "layer") + ".weight", users)


def fold_batchnorm(g: Graph) -> int:
    folded = 0
    users, producers = g.consumers(), g.producers()
    removed: set[int] = set()
    for bn in [n for n in g.nodes if n.is_spr and n.op == "BatchNormalization"]:
        x = bn.inputs[0]
        prev = producers.get(x)
        if prev is None or not _plain_layer(prev) or g.sole_reader(x, users) is not bn:
            continue
        if not all(g.is_const(i) for i in bn.inputs[1:5]):
            continue
        if prev.op == "Linear" and len(g.shapes.get(x, ())) != 2:
            continue  # BatchNorm's channel axis 1 is the Linear's output axis only for 2-D outputs
        scale, shift, mean, var = (g.consts[i].astype(np.float64).reshape(-1) for i in bn.inputs[1:5])
        s = scale / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        channels = out_channels(g, prev)
        if s.size != channels:
            continue
        _scale_weight(g, prev, s, users)
        _set_const_input(g, prev, 2, (_bias(g, prev, channels) - mean) * s + shift,
                         (prev.name or "layer") + ".bias", users)
        _absorb(prev, bn, users, producers, removed)
        folded += 1
    g.nodes = [n for n in g.nodes if id(n) not in removed]
    return folded


def _channel_vector(c: np.ndarray, out_shape: tuple[int, ...] | None, rank: int, axis: int,
                    channels: int) -> np.ndarray | None:
    """The constant as a vector over ``axis`` when adding it to the layer's output (rank
    ``rank``, ``channels`` entries on ``axis``) adds the same value along every other axis and
    does not change the output's shape."""
    if c.dtype.kind != "f" or c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + tuple(c.shape)
    if shape[axis] not in (1, channels):
        return None
    c = c.reshape(shape).astype(np.float64)
    others = [i for i, d in enumerate(shape) if i != axis and d != 1]
    if others:
        # a constant repeated along other axes (an exporter's Expand): only with a known output shape
        if out_shape is None or len(out_shape) != rank or any(shape[i] != out_shape[i] for i in others):
            return None
        part = c[tuple(slice(None) if i == axis else slice(0, 1) for i in range(rank))]
        if not np.array_equal(np.broadcast_to(part, shape), c):
            return None
        c = part
    return np.broadcast_to(c.reshape(-1), (channels,))


def fold_bias(g: Graph) -> int:
    folded = 0
    users, producers = g.consumers(), g.producers()
    removed: set[int] = set()
    for add in [n for n in g.nodes if n.is_spr and n.op in ("Add", "Sub")]:
        for k in (0, 1):
            t, c = add.inputs[k], add.inputs[1 - k]
            if add.op == "Sub" and k == 1:
                continue  # c - t is not a bias of t
            prev = producers.get(t)
            if prev is None or not g.is_const(c) or not _plain_layer(prev) or g.sole_reader(t, users) is not add:
                continue
            out_shape = g.shapes.get(t)
            rank = len(out_shape) if out_shape is not None else (2 if prev.op == "Linear" else 0)
            if rank == 0:
                continue
            axis = rank - 1 if prev.op == "Linear" else 1
            channels = out_channels(g, prev)
            static = out_shape if out_shape is not None and all(d >= 0 for d in out_shape) else None
            vec = _channel_vector(g.consts[c], static, rank, axis, channels)
            if vec is None:
                continue
            bias = _bias(g, prev, channels) + (vec if add.op == "Add" else -vec)
            _set_const_input(g, prev, 2, bias, (prev.name or "layer") + ".bias", users)
            _absorb(prev, add, users, producers, removed)
            folded += 1
            break
    g.nodes = [n for n in g.nodes if id(n) not in removed]
    return folded


def remove_dead_channels(g: Graph) -> int:
    """All-zero output channels of Conv / Linear layers removed with the readers' input
    channels, where the graph proves it exact (:mod:`sparsert._channels`)."""
    from sparsert._channels import remove_dead_channels as run

    return run(g)


# name -> pass; run in this order by optimize()
PASSES: dict[str, Callable[[Graph], int]] = {
    "fold_batchnorm": fold_batchnorm,
    "fold_bias": fold_bias,
    "remove_dead_channels": remove_dead_channels,
}


def optimize(g: Graph, disabled: Sequence[str] = ()) -> dict[str, int]:
    """Runs every pass of :data:`PASSES` not in ``disabled``; returns the rewrites each made."""
    unknown = set(disabled) - set(PASSES)
    if unknown:
        raise ValueError(f"unknown pass(es) {sorted(unknown)}; passes: {list(PASSES)}")
    return {name: fn(g) for name, fn in PASSES.items() if name not in disabled}


# --------------------------------------------------------------------------- pruning


def prune_weights(g: Graph, sparsity: float, skip_first: bool = True, skip_depthwise: bool = True,
                  block: tuple[int, int] = (1, 1)) -> list[str]:
    """Magnitude-prune Linear / Conv weights in place (per layer; in ``block`` units of output x
    input channels, scored by the block's L2 norm); returns the names of pruned nodes."""
    from sparsert._blocks import block_magnitude_mask

    pruned: list[str] = []
    first_conv_seen = False
    users = g.consumers()
    for node in g.nodes:
        if not node.is_spr or node.op not in SPARSE_WEIGHT_OPS or not g.is_const(node.inputs[1]):
            continue
        w = g.consts[node.inputs[1]]
        if node.op == "Conv":
            is_first = not first_conv_seen
            first_conv_seen = True
            if is_first and skip_first:
                continue
            if skip_depthwise and int(node.attrs.get("group", 1)) > 1 and w.shape[1] == 1:
                continue
        mask = block_magnitude_mask(w.reshape(w.shape[0], -1) if node.op == "Linear" else w, sparsity, block)
        if mask is None:
            continue
        _set_const_input(g, node, 1, np.where(mask.reshape(w.shape), w, 0.0), (node.name or "layer") + ".weight",
                         users)
        pruned.append(node.name)
    if pruned:
        warnings.warn(
            f"magnitude-pruned {len(pruned)} layer(s) to {sparsity:.0%} sparsity at conversion; accuracy "
            "usually drops without fine-tuning (prune with sparsert.prune and fine-tune for deployable models)",
            stacklevel=3,
        )
    return pruned


# --------------------------------------------------------------------------- emission


def emit(g: Graph, name: str, producer: str, metadata: dict[str, Any] | None = None, storage: str = "auto",
         block: tuple[int, int] | None = None, output_names: Sequence[str] | None = None) -> Any:
    """The graph as a :class:`sparsert.GraphBuilder` (not yet written).

    storage: ``"auto"`` (sparse for Linear / Conv weights with at least 50 % zeros), ``"dense"``,
    ``"csr"`` or ``"bsr"``; ``block`` is the BSR block (``"auto"`` uses BSR when it is given and
    divides the weight). Only input 1 of Linear / Conv is ever stored sparse.
    output_names: names for the graph outputs (default: their tensor names).
    """
    from sparsert.graph import GraphBuilder

    b = GraphBuilder(name, producer=producer, metadata=metadata)
    reserved = {i.name for i in g.graph_inputs} | set(g.outputs) | set(output_names or ())
    names: dict[str, str] = {}

    def fresh(base: str) -> str:
        n = b.unique_name(base)
        while n in reserved:
            n = b.unique_name(n + "_")
        return n

    for inp in g.graph_inputs:
        assert inp.shape is not None, f"input {inp.name!r} has no shape"
        names[inp.name] = b.input(inp.name, inp.shape, inp.dtype, inp.dim_names or None)
    const_cache: dict[tuple[str, str], str] = {}

    def const(tensor: str, store: str) -> str:
        key = (tensor, store)
        if key not in const_cache:
            arr = g.consts[tensor]
            mode = store
            if store == "bsr" and (block is None or not _block_divides(arr, block)):
                mode = "csr"
            const_cache[key] = b.constant(fresh(tensor), arr, storage=mode, block=block)
        return const_cache[key]

    outputs = list(g.outputs)
    wanted = list(output_names) if output_names is not None else outputs
    out_name = dict(zip(outputs, wanted))
    for node in g.nodes:
        ins: list[str | None] = []
        for k, t in enumerate(node.inputs):
            if not t:
                ins.append("")
            elif t in g.consts:
                weight = node.op in SPARSE_WEIGHT_OPS and k == 1
                ins.append(const(t, storage if weight else "dense"))
            else:
                ins.append(names[t])
        outs = []
        for o in node.outputs:
            outs.append(out_name[o] if o in out_name and out_name[o] not in names.values() else fresh(o))
            names[o] = outs[-1]
        b.node(node.op, ins, node.attrs, name=node.name or None, outputs=outs)
    done: set[str] = set()
    for o in outputs:
        if o in done:
            raise ValueError(f"graph output {o!r} is listed twice")
        done.add(o)
        if o in g.consts:
            raise ValueError(f"graph output {o!r} is a constant (it does not depend on any input)")
        b.output(names[o])
    return b


def _block_divides(arr: np.ndarray, block: tuple[int, int]) -> bool:
    if arr.ndim < 1:
        return False
    cols = int(np.prod(arr.shape[1:])) if arr.ndim > 1 else 1
    return arr.shape[0] % block[0] == 0 and cols % block[1] == 0
