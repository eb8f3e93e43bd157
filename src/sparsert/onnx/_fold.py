"""Freezing input shapes, shape inference and constant folding.

sparsert graphs carry no shape arithmetic: every Shape/Gather/Concat/... chain
an exporter emits to compute a Reshape target or a Resize size must reduce to
a constant. With the input shapes fixed, ``onnx.shape_inference`` gives every
tensor a static shape, ``Shape``/``Size`` of such a tensor becomes a constant,
and any node whose inputs are all constants is evaluated with the ONNX
reference implementation (``onnx.reference``, numpy). The three steps repeat
until nothing changes, since a folded Reshape target lets inference see further.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sparsert.onnx._ir import Graph, Node

# Ops that must not be evaluated at conversion time even with constant inputs.
_NOT_FOLDABLE = {
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "If",
    "Loop",
    "Scan",
}

# Float constants up to this many elements are given to shape inference with
# their values (they may be Resize scales etc.); larger ones (weights) only by shape.
_SMALL_FLOAT_CONST = 64


def freeze_inputs(g: Graph, input_shapes: Mapping[str, Sequence[int]] | None) -> None:
    """Give every graph input a static shape, from ``input_shapes`` or the model."""
    given = dict(input_shapes or {})
    unknown = [k for k in given if k not in g.inputs]
    if unknown:
        raise ValueError(
            f"input_shapes names {unknown}, which are not inputs of the model; "
            f"its inputs are {list(g.inputs)}"
        )
    missing: list[str] = []
    for name in g.inputs:
        declared = g.input_dims.get(name)
        if name in given:
            try:
                shape = tuple(int(d) for d in given[name])
            except (TypeError, ValueError):
                raise ValueError(
                    f"input_shapes[{name!r}] must be a sequence of ints, got {given[name]!r}"
                ) from None
            if any(d < 1 for d in shape):
                raise ValueError(
                    f"input_shapes[{name!r}] = {shape}: every dim must be >= 1 "
                    "(shapes are frozen at conversion)"
                )
            if declared is not None:
                if len(declared) != len(shape):
                    raise ValueError(
                        f"input_shapes[{name!r}] = {shape} has rank {len(shape)}, "
                        f"but the model declares {name!r} with rank {len(declared)}: {_dims_str(declared)}"
                    )
                for i, (d, s) in enumerate(zip(declared, shape)):
                    if isinstance(d, int) and d != s:
                        raise ValueError(
                            f"input_shapes[{name!r}] = {shape}: dim {i} is {s}, "
                            f"but the model fixes it to {d} ({_dims_str(declared)})"
                        )
            g.inputs[name] = shape
        elif declared is not None and all(isinstance(d, int) for d in declared):
            g.inputs[name] = tuple(int(d) for d in declared)  # type: ignore[arg-type]
        else:
            missing.append(name)
    if missing:
        parts = []
        for name in missing:
            declared = g.input_dims.get(name)
            if declared is None:
                parts.append(f"{name!r} (no shape declared)")
            else:
                syms = [
                    str(d) if d is not None else f"dim {i} (unnamed)"
                    for i, d in enumerate(declared)
                    if not isinstance(d, int)
                ]
                parts.append(f"{name!r} {_dims_str(declared)} — fill in {', '.join(syms)}")
        example = ", ".join(f"{n!r}: (...)" for n in missing)
        raise ValueError(
            "the model has inputs whose shape is not fixed; pass input_shapes={" + example + "} "
            "(CLI: --input-shape NAME=d0,d1,...): " + "; ".join(parts)
        )
    for name, shape in g.inputs.items():
        assert shape is not None
        g.shapes[name] = shape


def _dims_str(dims: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def infer_shapes(g: Graph) -> None:
    """Run onnx shape inference on the (ONNX-only) graph and record static shapes."""
    inputs = []
    inits = []
    for name, shape in g.inputs.items():
        assert shape is not None
        inputs.append(helper.make_tensor_value_info(name, g.input_types[name], list(shape)))
    for name, arr in g.consts.items():
        if not any(name in n.inputs for n in g.nodes):
            continue
        if arr.dtype.kind in "iub" or arr.size <= _SMALL_FLOAT_CONST:
            inits.append(numpy_helper.from_array(np.asarray(arr), name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
            inputs.append(helper.make_tensor_value_info(name, elem, list(arr.shape)))
    nodes = []
    for n in g.nodes:
        nodes.append(helper.make_node(n.op, n.inputs, n.outputs, name=n.name, domain=n.domain or None))
        nodes[-1].attribute.extend(n.proto_attrs or [])
    outputs = []
    for o in g.outputs:
        outputs.append(helper.make_tensor_value_info(o, g.elem_types.get(o, TensorProto.FLOAT), None))
    graph = helper.make_graph(nodes, "infer", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)])
    model.ir_version = max(model.ir_version, 7)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - a failing inference only means fewer known shapes
        return
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.elem_type:
            g.elem_types.setdefault(vi.name, int(t.elem_type))
        if not t.HasField("shape"):
            continue
        dims = []
        for d in t.shape.dim:
            if not d.HasField("dim_value"):
                break
            dims.append(int(d.dim_value))
        else:
            g.shapes.setdefault(vi.name, tuple(dims))


def _evaluate(node: Node, g: Graph) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    feeds = {i: g.consts[i] for i in node.inputs if i}
    ins = [
        helper.make_tensor_value_info(
            i, helper.np_dtype_to_tensor_dtype(g.consts[i].dtype), list(g.consts[i].shape)
        )
        for i in dict.fromkeys(i for i in node.inputs if i)
    ]
    proto = helper.make_node(node.op, node.inputs, node.outputs, name=node.name, domain=node.domain or None)
    proto.attribute.extend(node.proto_attrs or [])
    outs = [helper.make_empty_tensor_value_info(o) for o in node.outputs if o]
    model = helper.make_model(
        helper.make_graph([proto], "fold", ins, outs), opset_imports=[helper.make_opsetid("", g.opset)]
    )
    model.ir_version = max(model.ir_version, 7)
    results = ReferenceEvaluator(model).run(None, feeds)
    return [np.asarray(r) for r in results]


def _alias(g: Graph, node: Node, src: str) -> bool:
    """Make ``node`` (an identity) disappear, its output read as ``src``. False if it must stay."""
    out = node.outputs[0]
    if out in g.outputs:
        producer = g.producers().get(src)
        if producer is None or src in g.outputs:
            return False  # output = graph input or another output: keep a copy node
        producer.outputs = [out if o == src else o for o in producer.outputs]
        g.nodes.remove(node)
        g.replace_uses(src, out)
        if src in g.shapes:
            g.shapes[out] = g.shapes[src]
        return True
    g.nodes.remove(node)
    g.replace_uses(out, src)
    return True


def _is_float(g: Graph, name: str) -> bool:
    return g.elem_types.get(name, TensorProto.FLOAT) == TensorProto.FLOAT


def _fold_once(g: Graph) -> bool:
    changed = False
    for node in list(g.nodes):
        if node.domain not in ("", "ai.onnx"):
            continue
        op = node.op
        real_inputs = [i for i in node.inputs if i]
        # identities on activations
        if op == "Identity" or (op == "Dropout" and not any(node.outputs[1:])):
            if node.inputs[0] not in g.consts and _alias(g, node, node.inputs[0]):
                changed = True
                continue
        if op == "Cast" and node.inputs[0] not in g.consts:
            if node.attrs.get("to") == TensorProto.FLOAT and _is_float(g, node.inputs[0]):
                if _alias(g, node, node.inputs[0]):
                    changed = True
                    continue
        if op in ("Shape", "Size") and node.inputs[0] not in g.consts:
            shape = g.shapes.get(node.inputs[0])
            if shape is None:
                continue
            if op == "Size":
                value = np.array(int(np.prod(shape)), dtype=np.int64)
            else:
                start = int(node.attrs.get("start", 0))
                end = node.attrs.get("end")
                value = (
                    np.array(shape[start:end], dtype=np.int64)
                    if end is not None
                    else np.array(shape[start:], dtype=np.int64)
                )
            g.consts[node.outputs[0]] = value
            g.nodes.remove(node)
            changed = True
            continue
        if op in _NOT_FOLDABLE or not all(i in g.consts for i in real_inputs):
            continue
        if op == "Dropout" or op == "Identity":
            results = [g.consts[node.inputs[0]]]
        else:
            try:
                results = _evaluate(node, g)
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"cannot evaluate constant {node.describe()}: {e}") from e
        for o, r in zip(node.outputs, results):
            if o:
                g.consts[o] = r
        g.nodes.remove(node)
        changed = True
    return changed


def fold(g: Graph) -> None:
    """Repeat shape inference and constant folding until the graph stops changing."""
    for _ in range(64):
        infer_shapes(g)
        if not _fold_once(g):
            break
        g.remove_dead()
    g.remove_dead()
    for name in g.consts:
        g.shapes[name] = tuple(g.consts[name].shape)
