"""Channel dependency analysis on a torch.fx trace, for structured (filter/neuron) pruning.

Every output channel of a Conv/Linear ("producer") gets an integer id.  Each traced tensor that
carries such channels is described by ``_Channels(dim, ids)``: ``ids[p]`` is the channel id found at
position ``p`` along axis ``dim``.  Ops move ids around:

* BatchNorm, activations, pooling, dropout, channel-keeping reductions pass ids through
  (BatchNorm and depthwise convs also record the positions whose per-channel parameters go away);
* ``add``/``sub``/``mul``/``div`` of two tracked tensors unify the ids position by position (a
  residual ``add`` couples all convs feeding it);
* ``torch.cat`` on the channel axis concatenates the id lists (so consumer offsets fall out);
* ``flatten`` (and ``view``/``reshape`` to ``(N, -1)``) repeats each id H*W times, using the shapes
  found by running the example input through the trace;
* a Conv/Linear consuming a tracked tensor records which of its input positions carry which id.

Ids unified this way form "units" (channels that must go together); units sharing producers form
a *group*.  Any id that reaches something the analysis does not understand (an unknown op or
module, a grouped non-depthwise conv, a reshape with fixed sizes, a tensor mixed with an untracked
one) blocks its whole group, with the reason kept for a warning.  Ids reaching the model output
block their group silently: the output shape must not change (this keeps classifiers whole).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

PRODUCER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)
PER_CHANNEL_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)

_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Hardtanh, nn.Mish, nn.Softplus, nn.Dropout, nn.Identity,
)  # fmt: skip
# These keep axis 1 as the channel axis (N, C, ...); they are only followed when channels are there.
_SPATIAL_MODULES = (
    nn.Dropout1d, nn.Dropout2d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.Upsample,
)  # fmt: skip
_PASS_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.hardtanh,
    F.mish, F.softplus, F.dropout, torch.relu, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh,
    torch.clone, F.relu_, torch.relu_,
}  # fmt: skip
_SPATIAL_FUNCTIONS = {
    F.dropout1d, F.dropout2d, F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
    F.interpolate,
}  # fmt: skip
_PASS_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous", "clone", "detach", "float",
    "clamp", "clamp_", "clamp_min", "clamp_min_",
}  # fmt: skip
_ELEMENTWISE_BINARY = {
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul,
    operator.truediv, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
}  # fmt: skip
_ELEMENTWISE_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_REDUCTIONS = {"mean", "sum", "amax", "amin"}
_REDUCTION_FUNCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin}
_SHAPE_QUERIES_METHODS = {"size", "dim", "numel"}

# The reason given for groups whose channels reach the model output (never warned about).
OUTPUT_REASON = "feeds the model output"


@dataclass
class ChannelUnit:
    """Channels that are removed together (one coupled channel)."""

    out: dict[str, list[int]] = field(default_factory=dict)  # producer -> output channel indices
    channel: dict[str, list[int]] = field(default_factory=dict)  # BN / depthwise -> positions
    inputs: dict[str, list[int]] = field(default_factory=dict)  # consumer -> input positions


@dataclass
class ChannelGroup:
    producers: list[str]
    units: list[ChannelUnit]
    blocked_by: list[str]  # human-readable reasons; empty = prunable

    @property
    def prunable(self) -> bool:
        return not self.blocked_by


@dataclass
class _Channels:
    dim: int
    ids: list[int]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _op_name(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"module '{node.target}' ({type(modules[str(node.target)]).__name__})"
    if node.op == "call_method":
        return f"Tensor.{node.target} (node '{node.name}')"
    name = getattr(node.target, "__name__", str(node.target))
    return f"{name} (node '{node.name}')"


def _shape(node: Any) -> tuple[int, ...] | None:
    if not isinstance(node, torch.fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


class _Analyzer:
    def __init__(self, model: nn.Module, example_input: Any) -> None:
        self.model = model
        self.uf = _UnionFind()
        self.owner: list[tuple[str, int] | None] = []  # id -> (producer, out channel) or None
        self.blocked: dict[int, str | None] = {}  # id -> reason (None = model output, no warning)
        self.producer_ids: dict[str, list[int]] = {}
        self.consumer_ids: dict[str, list[int]] = {}
        self.channel_ids: dict[str, list[int]] = {}
        self.env: dict[torch.fx.Node, _Channels | None] = {}
        self.graph_module = torch.fx.symbolic_trace(model)
        self.modules = dict(self.graph_module.named_modules())
        inputs = example_input if isinstance(example_input, tuple) else (example_input,)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                ShapeProp(self.graph_module).propagate(*inputs)
        finally:
            model.train(was_training)

    # --- id bookkeeping -------------------------------------------------------------------------
    def _new_ids(self, count: int, owner: str | None) -> list[int]:
        ids = []
        for c in range(count):
            ids.append(self.uf.add())
            self.owner.append((owner, c) if owner is not None else None)
        return ids

    def _block(self, value: Any, reason: str | None) -> None:
        for channels in self._tracked_in(value):
            for i in channels.ids:
                if i not in self.blocked or self.blocked[i] is None:
                    self.blocked[i] = reason

    def _tracked_in(self, value: Any) -> list[_Channels]:
        found: list[_Channels] = []

        def visit(v: Any) -> None:
            if isinstance(v, torch.fx.Node):
                channels = self.env.get(v)
                if channels is not None:
                    found.append(channels)
            elif isinstance(v, (list, tuple)):
                for item in v:
                    visit(item)
            elif isinstance(v, dict):
                for item in v.values():
                    visit(item)

        visit(value)
        return found

    def _unify(self, a: list[int], b: list[int]) -> None:
        for x, y in zip(a, b):
            self.uf.union(x, y)

    def _record(self, table: dict[str, list[int]], name: str, ids: list[int]) -> None:
        if name in table:
            self._unify(table[name], ids)  # a module called twice shares its weights
        else:
            table[name] = list(ids)

    # --- the walk -------------------------------------------------------------------------------
    def run(self) -> list[ChannelGroup]:
        for node in self.graph_module.graph.nodes:
            if node.op in ("placeholder", "get_attr"):
                self.env[node] = None
            elif node.op == "output":
                self._block(node.args, None)
            else:
                self.env[node] = self._visit(node)
        return self._groups()

    def _visit(self, node: torch.fx.Node) -> _Channels | None:
        tracked = self._tracked_in((node.args, node.kwargs))
        if node.op == "call_module":
            return self._visit_module(node, self.modules[str(node.target)], tracked)
        if node.op == "call_method" and node.target in _SHAPE_QUERIES_METHODS:
            return None
        if node.op == "call_function" and node.target is getattr:
            return None
        if not tracked:
            return None
        x = node.args[0] if node.args else None
        target = node.target
        if node.op == "call_function" and target in _PASS_FUNCTIONS and len(tracked) == 1:
            return self.env.get(x) if isinstance(x, torch.fx.Node) else self._unknown(node)
        if node.op == "call_method" and target in _PASS_METHODS and len(tracked) == 1:
            return self.env.get(x) if isinstance(x, torch.fx.Node) else self._unknown(node)
        if node.op == "call_function" and target in _SPATIAL_FUNCTIONS and len(tracked) == 1:
            channels = self.env.get(x) if isinstance(x, torch.fx.Node) else None
            return channels if channels is not None and channels.dim == 1 else self._unknown(node)
        if (node.op == "call_function" and target in _ELEMENTWISE_BINARY) or (
            node.op == "call_method" and target in _ELEMENTWISE_BINARY_METHODS
        ):
            other = node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
            return self._binary(node, x, other)
        if (node.op == "call_function" and target is torch.cat) or (
            node.op == "call_function" and target is torch.concat
        ):
            return self._cat(node)
        if (node.op == "call_function" and target is torch.flatten) or (
            node.op == "call_method" and target == "flatten"
        ):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return self._flatten(node, x, start, end)
        if (node.op == "call_method" and target in ("view", "reshape")) or (
            node.op == "call_function" and target is torch.reshape
        ):
            return self._reshape(node, x)
        if (node.op == "call_method" and target in _REDUCTIONS) or (
            node.op == "call_function" and target in _REDUCTION_FUNCTIONS
        ):
            return self._reduce(node, x)
        if node.op == "call_function" and target is F.pad:
            return self._pad(node, x)
        return self._unknown(node)

    def _unknown(self, node: torch.fx.Node) -> None:
        self._block((node.args, node.kwargs), f"unsupported op {_op_name(node, self.modules)}")
        return None

    def _visit_module(
        self, node: torch.fx.Node, module: nn.Module, tracked: list[_Channels]
    ) -> _Channels | None:
        name = str(node.target)
        x = node.args[0] if node.args else None
        channels = self.env.get(x) if isinstance(x, torch.fx.Node) else None
        if len(tracked) > (1 if channels is not None else 0):
            self._block((node.args, node.kwargs), f"module '{name}' called with several tensors")
            channels = None
        in_shape = _shape(x)
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
            if depthwise:
                if channels is None:
                    return None
                if channels.dim != 1 or len(channels.ids) != module.in_channels:
                    return self._unknown(node)
                self._record(self.channel_ids, name, channels.ids)
                return _Channels(1, channels.ids)
            if module.groups > 1:
                self._block(node.args, f"grouped convolution '{name}' (groups={module.groups})")
                return None
            if channels is not None:
                if channels.dim != 1 or len(channels.ids) != module.in_channels:
                    return self._unknown(node)
                self._record(self.consumer_ids, name, channels.ids)
            if name not in self.producer_ids:
                self.producer_ids[name] = self._new_ids(module.out_channels, name)
            return _Channels(1, self.producer_ids[name])
        if isinstance(module, nn.Linear):
            if channels is not None:
                if (
                    in_shape is None
                    or channels.dim != len(in_shape) - 1
                    or len(channels.ids) != module.in_features
                ):
                    self._block(node.args, f"module '{name}' (Linear) reads channels on a non-last axis")
                else:
                    self._record(self.consumer_ids, name, channels.ids)
            out_shape = _shape(node)
            if out_shape is None:
                return None
            if name not in self.producer_ids:
                self.producer_ids[name] = self._new_ids(module.out_features, name)
            return _Channels(len(out_shape) - 1, self.producer_ids[name])
        if isinstance(module, PER_CHANNEL_TYPES):
            if channels is None:
                return None
            if channels.dim != 1 or len(channels.ids) != module.num_features:
                return self._unknown(node)
            self._record(self.channel_ids, name, channels.ids)
            return channels
        if isinstance(module, _ELEMENTWISE_MODULES):
            return channels
        if isinstance(module, _SPATIAL_MODULES):
            return channels if channels is None or channels.dim == 1 else self._unknown(node)
        if isinstance(module, nn.Flatten):
            return self._flatten(node, x, module.start_dim, module.end_dim)
        if channels is None:
            return None
        return self._unknown(node)

    def _binary(self, node: torch.fx.Node, a: Any, b: Any) -> _Channels | None:
        ca = self.env.get(a) if isinstance(a, torch.fx.Node) else None
        cb = self.env.get(b) if isinstance(b, torch.fx.Node) else None
        sa, sb = _shape(a), _shape(b)
        if ca is not None and cb is not None:
            if sa == sb and ca.dim == cb.dim and len(ca.ids) == len(cb.ids):
                self._unify(ca.ids, cb.ids)
                return ca
            self._block((a, b), f"{_op_name(node, self.modules)} on tensors with different channel layouts")
            return None
        known, other, other_shape, known_shape = (ca, b, sb, sa) if ca is not None else (cb, a, sa, sb)
        assert known is not None and known_shape is not None
        if not isinstance(other, torch.fx.Node):
            return known  # a Python number
        if other_shape is None:
            return self._unknown(node)
        # An untracked tensor broadcast along the channel axis (size 1 there) leaves channels alone.
        axis_from_right = len(known_shape) - known.dim
        if len(other_shape) < axis_from_right or other_shape[len(other_shape) - axis_from_right] == 1:
            if len(other_shape) <= len(known_shape):
                return known
        self._block(
            (a, b), f"{_op_name(node, self.modules)} mixes channels with a tensor the analysis does not track"
        )
        return None

    def _cat(self, node: torch.fx.Node) -> _Channels | None:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        out_shape = _shape(node)
        if not isinstance(tensors, (list, tuple)) or out_shape is None or not isinstance(dim, int):
            return self._unknown(node)
        dim = dim % len(out_shape)
        parts = [self.env.get(t) if isinstance(t, torch.fx.Node) else None for t in tensors]
        tracked = [p for p in parts if p is not None]
        if any(p.dim != tracked[0].dim for p in tracked):
            return self._unknown(node)
        if tracked[0].dim == dim:
            ids: list[int] = []
            for t, p in zip(tensors, parts):
                if p is not None:
                    ids.extend(p.ids)
                else:
                    shape = _shape(t)
                    if shape is None:
                        return self._unknown(node)
                    fresh = self._new_ids(shape[dim], None)
                    for i in fresh:  # channels of an untracked input are never removed
                        self.blocked[i] = "concatenated with a tensor the analysis does not track"
                    ids.extend(fresh)
            return _Channels(dim, ids)
        if len(tracked) == len(parts) and all(len(p.ids) == len(tracked[0].ids) for p in tracked):
            for p in tracked[1:]:
                self._unify(tracked[0].ids, p.ids)
            return tracked[0]
        return self._unknown(node)

    def _flatten(self, node: torch.fx.Node, x: Any, start: Any, end: Any) -> _Channels | None:
        channels = self.env.get(x) if isinstance(x, torch.fx.Node) else None
        shape = _shape(x)
        if channels is None:
            return None
        if shape is None or not isinstance(start, int) or not isinstance(end, int):
            return self._unknown(node)
        start, end = start % len(shape), end % len(shape)
        d = channels.dim
        if d < start:
            return channels
        if d > end:
            return _Channels(d - (end - start), channels.ids)
        inner = math.prod(shape[d + 1 : end + 1])
        outer = math.prod(shape[start:d])
        ids = [i for _ in range(outer) for i in channels.ids for _ in range(inner)]
        return _Channels(start, ids)

    def _reshape(self, node: torch.fx.Node, x: Any) -> _Channels | None:
        channels = self.env.get(x) if isinstance(x, torch.fx.Node) else None
        in_shape, out_shape = _shape(x), _shape(node)
        if channels is None:
            return None
        if in_shape is None or out_shape is None:
            return self._unknown(node)
        sizes = list(node.args[1:]) if node.op == "call_method" else list(node.args[1:2])
        if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
            sizes = list(sizes[0])
        k = len(out_shape)
        d = channels.dim
        flattening = (
            k <= len(in_shape)
            and k - 1 <= d
            and tuple(out_shape[: k - 1]) == tuple(in_shape[: k - 1])
            and out_shape[k - 1] == math.prod(in_shape[k - 1 :])
        )
        if not flattening or len(sizes) != k:
            self._block(x, f"reshape the analysis cannot follow {_op_name(node, self.modules)}")
            return None
        new_dim = k - 1 if d >= k - 1 else d
        size_at_channel = sizes[new_dim]
        # A literal size on the channel axis would break once channels are physically removed.
        if not (size_at_channel == -1 or isinstance(size_at_channel, torch.fx.Node)):
            self._block(x, f"reshape with a fixed channel size {_op_name(node, self.modules)}")
            return None
        return self._flatten(node, x, k - 1, len(in_shape) - 1)

    def _reduce(self, node: torch.fx.Node, x: Any) -> _Channels | None:
        channels = self.env.get(x) if isinstance(x, torch.fx.Node) else None
        shape = _shape(x)
        if channels is None:
            return None
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        if shape is None or dims is None:
            return self._unknown(node)
        dims_list = [dims] if isinstance(dims, int) else list(dims)
        if not all(isinstance(v, int) for v in dims_list):
            return self._unknown(node)
        dims_list = [v % len(shape) for v in dims_list]
        if channels.dim in dims_list:
            return self._unknown(node)
        if keepdim:
            return channels
        return _Channels(channels.dim - sum(1 for v in dims_list if v < channels.dim), channels.ids)

    def _pad(self, node: torch.fx.Node, x: Any) -> _Channels | None:
        channels = self.env.get(x) if isinstance(x, torch.fx.Node) else None
        shape = _shape(x)
        pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
        if channels is None:
            return None
        if shape is None or not isinstance(pad, (list, tuple)):
            return self._unknown(node)
        if channels.dim >= len(shape) - len(pad) // 2:
            return self._unknown(node)
        return channels

    # --- grouping -------------------------------------------------------------------------------
    def _groups(self) -> list[ChannelGroup]:
        find = self.uf.find
        units: dict[int, ChannelUnit] = {}
        for table, attr in (
            (self.producer_ids, "out"),
            (self.channel_ids, "channel"),
            (self.consumer_ids, "inputs"),
        ):
            for name, ids in table.items():
                for position, i in enumerate(ids):
                    unit = units.setdefault(find(i), ChannelUnit())
                    getattr(unit, attr).setdefault(name, []).append(position)
        # Units that share a producer belong to one group.
        group_uf = _UnionFind()
        roots = sorted(units)
        index = {root: group_uf.add() for root in roots}
        first_unit_of_producer: dict[str, int] = {}
        for root in roots:
            for producer in units[root].out:
                if producer in first_unit_of_producer:
                    group_uf.union(index[first_unit_of_producer[producer]], index[root])
                else:
                    first_unit_of_producer[producer] = root
        reasons: dict[int, list[str]] = {}
        blocked_roots: set[int] = set()
        for i, reason in self.blocked.items():
            root = find(i)
            blocked_roots.add(root)
            if reason is not None:
                reasons.setdefault(root, [])
                if reason not in reasons[root]:
                    reasons[root].append(reason)
        members: dict[int, list[int]] = {}
        for root in roots:
            members.setdefault(group_uf.find(index[root]), []).append(root)
        groups = []
        for unit_roots in members.values():
            group_units = [units[r] for r in unit_roots]
            producers = sorted({p for u in group_units for p in u.out}, key=list(self.producer_ids).index)
            if not producers:
                continue  # channels with no producer (untracked concat inputs)
            first = producers[0]
            group_units = [u for u in group_units if first in u.out] + [
                u for u in group_units if first not in u.out
            ]
            group_units.sort(key=lambda u: min(u.out.get(first, [1 << 60])))
            blocked_by: list[str] = []
            is_blocked = False
            for r in unit_roots:
                if r in blocked_roots:
                    is_blocked = True
                    for reason in reasons.get(r, []):
                        if reason not in blocked_by:
                            blocked_by.append(reason)
            if is_blocked and not blocked_by:
                blocked_by = [OUTPUT_REASON]
            groups.append(ChannelGroup(producers=producers, units=group_units, blocked_by=blocked_by))
        return groups


def analyze_dependencies(model: nn.Module, example_input: Any) -> list[ChannelGroup]:
    """Traces ``model`` with torch.fx and returns its channel groups (prunable or not).

    ``example_input`` is a tensor (or a tuple of positional inputs) used for shape propagation; the
    model runs once on it in eval mode under ``torch.no_grad()``.  Raises ``RuntimeError`` naming
    the cause if the model cannot be traced symbolically.
    """
    try:
        analyzer = _Analyzer(model, example_input)
    except Exception as exc:  # fx raises many different types for untraceable code
        raise RuntimeError(
            f"sparsert.prune: torch.fx could not trace {type(model).__name__} for the dependency "
            f"analysis ({type(exc).__name__}: {exc})"
        ) from exc
    return analyzer.run()
