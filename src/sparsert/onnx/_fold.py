"""Input shapes, shape inference and constant folding.

Dims the model leaves symbolic (``batch``, ``sequence``) stay symbolic unless
``input_shapes`` fixes them: the ``.spr`` input keeps ``-1`` with the dim's name,
and shape computations that depend on such dims (``Shape -> Gather -> Concat``
chains feeding a ``Reshape``) stay in the graph as runtime ops, which the runtime
evaluates once per input shape while planning. With fixed shapes everything that
depends only on shapes becomes a constant here.

Folding evaluates every node whose inputs are all constants with the ONNX
reference implementation (``onnx.reference``, numpy); a node it cannot evaluate
is left to the runtime. Every folded constant is bounded (``max_constant_bytes``):
a tiny ONNX file must not make the converter allocate gigabytes. Each round is
linear in the graph size; rounds repeat only while folding makes more shapes
known. ``If`` nodes whose condition is a constant are replaced by the taken branch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sparsert.onnx._ir import Graph, Node, convert_array, graph_nodes, runtime_elem_type

# Ops that must not be evaluated at conversion time even with constant inputs.
_NOT_FOLDABLE = {
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
    "If", "Loop", "Scan", "Dropout", "Identity",
}

# Constants up to this many elements are given to shape inference with their values (shape
# arithmetic, Resize scales); larger ones (weights) only by type and shape.
_SMALL_CONST = 1024


def resolve_inputs(g: Graph, input_shapes: Mapping[str, Sequence[int]] | None) -> None:
    """Every graph input gets a shape: from ``input_shapes``, or the model's own with symbolic or
    unknown dims as -1 (named after the model's dim_param)."""
    given = dict(input_shapes or {})
    unknown = [k for k in given if k not in g.inputs]
    if unknown:
        raise ValueError(
            f"input_shapes names {unknown}, which are not inputs of the model; its inputs are {list(g.inputs)}"
        )
    no_rank = []
    for name in g.inputs:
        declared = g.input_dims.get(name)
        if name in given:
            try:
                shape = tuple(int(d) for d in given[name])
            except (TypeError, ValueError):
                raise ValueError(f"input_shapes[{name!r}] must be a sequence of ints, got {given[name]!r}") from None
            if any(d < 1 for d in shape):
                raise ValueError(f"input_shapes[{name!r}] = {shape}: every dim must be >= 1")
            if declared is not None:
                if len(declared) != len(shape):
                    raise ValueError(
                        f"input_shapes[{name!r}] = {shape} has rank {len(shape)}, but the model declares "
                        f"{name!r} with rank {len(declared)}: {_dims_str(declared)}"
                    )
                for i, (d, s) in enumerate(zip(declared, shape)):
                    if isinstance(d, int) and d != s:
                        raise ValueError(
                            f"input_shapes[{name!r}] = {shape}: dim {i} is {s}, but the model fixes it to {d} "
                            f"({_dims_str(declared)})"
                        )
            g.inputs[name] = shape
            g.input_dim_names[name] = ("",) * len(shape)
        elif declared is None:
            no_rank.append(name)
        else:
            g.inputs[name] = tuple(d if isinstance(d, int) else -1 for d in declared)
            g.input_dim_names[name] = tuple(d if isinstance(d, str) else "" for d in declared)
    if no_rank:
        example = ", ".join(f"{n!r}: (...)" for n in no_rank)
        raise ValueError(
            f"the model declares no shape for input(s) {no_rank}; pass input_shapes={{{example}}} "
            "(CLI: --input-shape NAME=d0,d1,...)"
        )
    for name, shape in g.inputs.items():
        assert shape is not None
        g.shapes[name] = shape


def _dims_str(dims: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def infer_shapes(g: Graph) -> None:
    """Run onnx shape inference on the (ONNX-only) graph; record shapes (-1 for symbolic dims)
    and element types. A failing inference only means fewer known shapes."""
    inputs, inits = [], []
    used: set[str] = set()
    for n in g.nodes:
        used.update(i for i in n.inputs if i)
    for name, shape in g.inputs.items():
        assert shape is not None
        dims = [d if d >= 0 else (g.input_dim_names.get(name, ())[i] or None) if i < len(g.input_dim_names.get(name, ()))
                else None for i, d in enumerate(shape)]
        inputs.append(helper.make_tensor_value_info(name, runtime_elem_type(g.input_types[name]), dims))
    for name, arr in g.consts.items():
        if name not in used:
            continue
        if arr.size <= _SMALL_CONST:
            inits.append(numpy_helper.from_array(np.asarray(arr), name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
            inputs.append(helper.make_tensor_value_info(name, elem, list(arr.shape)))
    nodes = []
    for n in g.nodes:
        if not n.is_spr:
            proto = helper.make_node(n.op, n.inputs, n.outputs, name=n.name, domain=n.domain or None)
            proto.attribute.extend(n.proto_attrs or [])
            nodes.append(proto)
    outputs = [helper.make_tensor_value_info(o, g.elem_types.get(o, TensorProto.FLOAT), None) for o in g.outputs]
    model = helper.make_model(helper.make_graph(nodes, "infer", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", g.opset)])
    model.ir_version = max(model.ir_version, 7)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001
        return
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.elem_type:
            g.elem_types.setdefault(vi.name, int(t.elem_type))
        if not t.HasField("shape"):
            continue
        dims = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in t.shape.dim)
        old = g.shapes.get(vi.name)
        if old is not None and len(old) == len(dims):
            # a later round (after more folding) may know dims an earlier one did not
            dims = tuple(o if o >= 0 else d for o, d in zip(old, dims))
        g.shapes[vi.name] = dims


def _static(shape: tuple[int, ...] | None) -> bool:
    return shape is not None and all(d >= 0 for d in shape)


def _estimated_bytes(node: Node, g: Graph) -> int | None:
    """What evaluating ``node`` would allocate, when it can be told before evaluating."""
    def val(i: int) -> np.ndarray | None:
        return g.consts.get(node.inputs[i]) if i < len(node.inputs) and node.inputs[i] else None

    try:
        if node.op == "ConstantOfShape":
            shape = val(0)
            return int(np.prod([int(d) for d in shape.reshape(-1)], dtype=object)) * 8 if shape is not None else None
        if node.op == "Expand":
            data, shape = val(0), val(1)
            if data is None or shape is None:
                return None
            out = np.broadcast_shapes(data.shape, tuple(int(d) for d in shape.reshape(-1)))
            return int(np.prod(out, dtype=object)) * data.itemsize
        if node.op == "Tile":
            data, reps = val(0), val(1)
            if data is None or reps is None:
                return None
            return data.nbytes * int(np.prod([max(int(r), 0) for r in reps.reshape(-1)], dtype=object))
        if node.op == "Range":
            start, limit, delta = val(0), val(1), val(2)
            if start is None or limit is None or delta is None or float(delta.reshape(-1)[0]) == 0:
                return None
            count = np.ceil((float(limit.reshape(-1)[0]) - float(start.reshape(-1)[0])) / float(delta.reshape(-1)[0]))
            return int(max(count, 0)) * 8
    except (ValueError, TypeError, OverflowError):
        return None
    total = 0
    for o in node.outputs:
        shape = g.shapes.get(o)
        if not _static(shape):
            return None
        total += int(np.prod(shape, dtype=object)) * 8
    return total


def _evaluate(node: Node, g: Graph) -> list[np.ndarray] | None:
    """The node's outputs from onnx.reference, or None when it cannot evaluate them."""
    from onnx.reference import ReferenceEvaluator

    feeds = {i: g.consts[i] for i in node.inputs if i}
    ins = [
        helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(g.consts[i].dtype), list(g.consts[i].shape))
        for i in dict.fromkeys(i for i in node.inputs if i)
    ]
    proto = helper.make_node(node.op, node.inputs, node.outputs, name=node.name, domain=node.domain or None)
    proto.attribute.extend(node.proto_attrs or [])
    outs = [helper.make_empty_tensor_value_info(o) for o in node.outputs if o]
    model = helper.make_model(helper.make_graph([proto], "fold", ins, outs),
                              opset_imports=[helper.make_opsetid("", g.opset)])
    model.ir_version = max(model.ir_version, 7)
    try:
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # noqa: BLE001 - left to the runtime, which evaluates it while planning
        return None
    return [np.asarray(r) for r in results]


def _shape_value(node: Node, g: Graph) -> np.ndarray | None:
    """Shape / Size of a tensor whose shape is fully known."""
    shape = g.shapes.get(node.inputs[0])
    if not _static(shape):
        return None
    assert shape is not None
    if node.op == "Size":
        return np.array(int(np.prod(shape)), dtype=np.int64)
    start = int(node.attrs.get("start", 0))
    end = node.attrs.get("end")
    dims = shape[start:] if end is None else shape[start:int(end)]
    return np.array(dims, dtype=np.int64)


def _gather_of_shape(node: Node, g: Graph, producers: dict[str, Node]) -> np.ndarray | None:
    """``Gather(Shape(x), i)`` when the dims it picks are static, even if others are symbolic
    (the channel count of a tensor with a dynamic batch): exporters test such dims in ``If``
    conditions and reshapes."""
    src = producers.get(node.inputs[0])
    idx = g.consts.get(node.inputs[1]) if len(node.inputs) > 1 else None
    if src is None or src.op != "Shape" or idx is None or int(node.attrs.get("axis", 0)) != 0:
        return None
    shape = g.shapes.get(src.inputs[0])
    if shape is None or idx.dtype.kind not in "iu":
        return None
    rank = len(shape)

    def clamp(v: int) -> int:
        v = v + rank if v < 0 else v
        return min(max(v, 0), rank)

    start = clamp(int(src.attrs.get("start", 0)))
    end = clamp(int(src.attrs["end"])) if "end" in src.attrs else rank
    dims = list(shape[start:end])
    picked = []
    for i in idx.reshape(-1).tolist():
        if not -len(dims) <= i < len(dims):
            return None  # out of range: left to the runtime, which reports it
        d = dims[i]
        if d is None or d < 0:
            return None
        picked.append(d)
    return np.array(picked, dtype=np.int64).reshape(idx.shape)


def _inline_if(node: Node, g: Graph) -> list[Node] | None:
    """The nodes of the branch an If with a constant condition takes (outer names kept)."""
    cond = g.consts.get(node.inputs[0])
    if cond is None or cond.size != 1:
        return None
    branch = node.attrs.get("then_branch" if bool(cond.reshape(-1)[0]) else "else_branch")
    if not isinstance(branch, onnx.AttributeProto) or not branch.HasField("g"):
        return None
    sub = branch.g
    for init in sub.initializer:
        g.consts[init.name] = convert_array(numpy_helper.to_array(init))
    nodes = graph_nodes(sub, g)
    # the branch's outputs are the If's outputs
    rename = {o.name: out for o, out in zip(sub.output, node.outputs)}
    for n in nodes:
        n.outputs = [rename.get(o, o) for o in n.outputs]
        n.inputs = [rename.get(i, i) for i in n.inputs]
    for o, out in rename.items():
        if o in g.consts:  # a branch output that is a constant
            g.consts[out] = g.consts[o]
    return nodes


def _fold_round(g: Graph, max_bytes: int) -> bool:
    changed = False
    kept: list[Node] = []
    producers = {o: n for n in g.nodes for o in n.outputs if o}
    for node in g.nodes:
        if node.is_spr or node.domain not in ("", "ai.onnx"):
            kept.append(node)
            continue
        if node.op == "If":
            branch = _inline_if(node, g)
            if branch is not None:
                kept.extend(branch)
                changed = True
                continue
        if node.op in ("Shape", "Size") and node.inputs[0] not in g.consts:
            value = _shape_value(node, g)
            if value is not None:
                g.consts[node.outputs[0]] = value
                changed = True
                continue
        if node.op == "Gather" and node.inputs[0] not in g.consts:
            value = _gather_of_shape(node, g, producers)
            if value is not None:
                g.consts[node.outputs[0]] = value
                changed = True
                continue
        real = [i for i in node.inputs if i]
        if node.op in _NOT_FOLDABLE or not real or not all(i in g.consts for i in real):
            kept.append(node)
            continue
        estimate = _estimated_bytes(node, g)
        if estimate is not None and estimate > max_bytes:
            raise ValueError(
                f"folding the constant {node.describe()} would make {estimate} bytes, more than the limit of "
                f"{max_bytes} (convert(..., max_constant_bytes=N) raises it)"
            )
        results = _evaluate(node, g)
        if results is None:
            kept.append(node)
            continue
        for o, r in zip(node.outputs, results):
            if r.nbytes > max_bytes:
                raise ValueError(
                    f"folding the constant {node.describe()} made {r.nbytes} bytes, more than the limit of "
                    f"{max_bytes} (convert(..., max_constant_bytes=N) raises it)"
                )
            if o:
                g.consts[o] = convert_array(r)
        changed = True
    g.nodes = kept
    return changed


def _drop_identities(g: Graph) -> None:
    """Identity and inference-mode Dropout on activations disappear: readers read the source."""
    rename: dict[str, str] = {}
    kept: list[Node] = []
    outputs = set(g.outputs)
    for node in g.nodes:
        node.inputs = [rename.get(i, i) for i in node.inputs]
        is_copy = (node.op == "Identity" or (node.op == "Dropout" and not any(node.outputs[1:]))) and not node.is_spr
        if is_copy and node.outputs[0] not in outputs:
            rename[node.outputs[0]] = node.inputs[0]
            continue
        kept.append(node)
    g.nodes = kept
    g.outputs = [rename.get(o, o) for o in g.outputs]
    # an Identity that names a graph output: its source (made by a node, not itself an output)
    # takes the output's name instead, so no copy runs
    produced = {o for node in g.nodes for o in node.outputs if o}
    outputs = set(g.outputs)
    rename = {}
    for node in g.nodes:
        if (node.op == "Identity" and not node.is_spr and node.outputs[0] in outputs and node.inputs
                and node.inputs[0] in produced and node.inputs[0] not in outputs and node.inputs[0] not in rename):
            rename[node.inputs[0]] = node.outputs[0]
    if rename:
        kept = []
        for node in g.nodes:
            if node.op == "Identity" and not node.is_spr and node.inputs and rename.get(node.inputs[0]) == node.outputs[0]:
                continue
            node.inputs = [rename.get(i, i) for i in node.inputs]
            node.outputs = [rename.get(o, o) for o in node.outputs]
            kept.append(node)
        g.nodes = kept


def fold(g: Graph, max_constant_bytes: int) -> None:
    """Shape inference and constant folding until the graph stops changing."""
    _drop_identities(g)
    for _ in range(64):
        infer_shapes(g)
        if not _fold_round(g, max_constant_bytes):
            break
        g.remove_dead()
    g.remove_dead()
    for name, arr in g.consts.items():
        g.shapes[name] = tuple(arr.shape)


__all__ = ["fold", "infer_shapes", "resolve_inputs"]
