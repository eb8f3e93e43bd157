"""A small mutable graph the converter works on, and its construction from an ONNX model.

ONNX protobufs are awkward to rewrite in place, so the converter copies the
graph into plain Python objects: constants become numpy arrays, attributes
become Python values (the original ``AttributeProto`` list is kept so the
graph can be handed back to ``onnx.shape_inference`` while it still holds
only ONNX ops). Nodes whose ``domain`` is ``"spr"`` are already sparsert ops
(docs/spr-format.md section 5); the others are ONNX ops still to be mapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from sparsert import FormatError, ir

SPR = "spr"  # domain of nodes that are sparsert ops already


@dataclass
class Node(ir.Node):
    """An ONNX node (``domain`` ``""``), or a sparsert op once mapped (``domain == "spr"``)."""

    proto_attrs: list[onnx.AttributeProto] | None = None


@dataclass
class Graph(ir.Graph):
    """The shared graph of :mod:`sparsert.ir` plus what the ONNX steps need."""

    inputs: dict[str, tuple[int, ...] | None] = field(default_factory=dict)  # name -> shape (-1: dynamic)
    input_dims: dict[str, list[int | str | None] | None] = field(default_factory=dict)  # declared dims
    input_types: dict[str, int] = field(default_factory=dict)
    opset: int = 0
    elem_types: dict[str, int] = field(default_factory=dict)
    output_protos: list[onnx.ValueInfoProto] = field(default_factory=list)

    def shape(self, name: str, node: Node | None = None) -> tuple[int, ...]:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        s = self.shapes.get(name)
        if s is None:
            where = f" (input of {node.describe()})" if node is not None else ""
            raise ValueError(
                f"could not infer the shape of tensor {name!r}{where}; "
                "check that input_shapes covers every model input"
            )
        return s


def attr_value(a: onnx.AttributeProto) -> Any:
    if a.type == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(a.t)
    if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
        return a  # subgraphs (If/Loop/Scan) are not supported; kept for the error message
    v = onnx.helper.get_attribute_value(a)
    if v is None:  # type UNDEFINED or unknown: a broken file, not a value of None
        raise FormatError(f"attribute {a.name!r} has no value (attribute type {a.type})")
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode("utf-8", "replace") for x in v]
    return v


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray:
    if len(node.attribute) != 1:
        raise FormatError(f"Constant node {node.name!r} must have exactly one value attribute")
    a = node.attribute[0]
    if a.name == "value":
        return numpy_helper.to_array(a.t)
    if a.name == "value_float":
        return np.array(a.f, dtype=np.float32)
    if a.name == "value_floats":
        return np.array(list(a.floats), dtype=np.float32)
    if a.name == "value_int":
        return np.array(a.i, dtype=np.int64)
    if a.name == "value_ints":
        return np.array(list(a.ints), dtype=np.int64)
    if a.name == "sparse_value":
        return _sparse_to_dense(a.sparse_tensor)
    raise FormatError(f"Constant node {node.name!r}: unsupported value attribute {a.name!r}")


def _sparse_to_dense(sp: onnx.SparseTensorProto) -> np.ndarray:
    values = numpy_helper.to_array(sp.values)
    idx = numpy_helper.to_array(sp.indices).astype(np.int64)
    dims = tuple(int(d) for d in sp.dims)
    out = np.zeros(dims, dtype=values.dtype)
    if idx.ndim == 1:
        out.reshape(-1)[idx] = values
    else:
        out[tuple(idx.T)] = values
    return out


def opset_of(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise FormatError("the model imports no version of the default ONNX operator set (opset_import)")


def from_model(model: onnx.ModelProto) -> Graph:
    """Copy ``model.graph`` into a :class:`Graph`, validating what the converter relies on."""
    if not model.HasField("graph"):
        raise FormatError("not an ONNX model: no graph (empty, truncated or not a .onnx file)")
    opset = opset_of(model)
    g = model.graph
    if not g.output:
        raise FormatError("the ONNX graph has no outputs (truncated file?)")
    consts: dict[str, np.ndarray] = {}
    for init in g.initializer:
        try:
            consts[init.name] = numpy_helper.to_array(init)
        except Exception as e:  # noqa: BLE001 - protobuf/numpy raise many kinds
            raise FormatError(f"initializer {init.name!r} cannot be read: {e}") from e
    for sp in g.sparse_initializer:
        consts[sp.values.name] = _sparse_to_dense(sp)
    inputs: dict[str, tuple[int, ...] | None] = {}
    input_dims: dict[str, list[int | str | None]] = {}
    input_types: dict[str, int] = {}
    for vi in g.input:
        if vi.name in consts:
            continue  # IR < 4 lists initializers as inputs too
        t = vi.type.tensor_type
        dims: list[int | str | None] = []
        if t.HasField("shape"):
            for d in t.shape.dim:
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(int(d.dim_value))
                elif d.HasField("dim_param") and d.dim_param:
                    dims.append(d.dim_param)
                else:
                    dims.append(None)
            input_dims[vi.name] = dims
        else:
            input_dims[vi.name] = None  # type: ignore[assignment]
        inputs[vi.name] = None
        input_types[vi.name] = int(t.elem_type)
    nodes: list[Node] = []
    defined = set(consts) | set(inputs)
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}"
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            try:
                consts[n.output[0]] = _constant_node_value(n)
            except FormatError:
                raise
            except Exception as e:  # noqa: BLE001
                raise FormatError(f"Constant node {name!r} cannot be read: {e}") from e
            defined.add(n.output[0])
            continue
        for inp in n.input:
            if inp and inp not in defined:
                raise FormatError(
                    f"{n.op_type} node {name!r} reads tensor {inp!r}, which no initializer, "
                    "graph input or earlier node defines (truncated or unsorted graph)"
                )
        attrs = {a.name: attr_value(a) for a in n.attribute}
        nodes.append(Node(n.op_type, list(n.input), list(n.output), attrs, name, where=name, domain=n.domain,
                          proto_attrs=list(n.attribute)))
        defined.update(o for o in n.output if o)
    outputs = [o.name for o in g.output]
    for o in outputs:
        if o not in defined:
            raise FormatError(f"graph output {o!r} is not produced by any node")
    elem_types: dict[str, int] = {}
    for vi in list(g.value_info) + list(g.output):
        if vi.type.HasField("tensor_type"):
            elem_types[vi.name] = int(vi.type.tensor_type.elem_type)
    elem_types.update(input_types)
    graph = Graph(nodes=nodes, consts=consts, outputs=outputs, inputs=inputs, input_dims=input_dims,
                  input_types=input_types, opset=opset, elem_types=elem_types)
    graph.output_protos = list(g.output)
    graph._taken = set(defined) | {o for n in nodes for o in n.outputs if o}
    return graph
