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
from onnx import TensorProto, numpy_helper

from sparsert import FormatError, UnsupportedError, ir

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
    input_dim_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    opset: int = 0
    elem_types: dict[str, int] = field(default_factory=dict)
    output_protos: list[onnx.ValueInfoProto] = field(default_factory=list)
    # names some node reads, fixed while mapping (a mapper keeps its node's output names)
    read_names: set[str] = field(default_factory=set)

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


# Opsets of the default domain this converter knows (older models are refused, newer ones too:
# an op whose meaning changed in an unknown opset would convert silently wrong).
MIN_OPSET = 6


def max_opset() -> int:
    return int(onnx.defs.onnx_opset_version())


def opset_of(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            v = int(imp.version)
            if not MIN_OPSET <= v <= max_opset():
                raise UnsupportedError(
                    f"the model uses ONNX opset {v}; this converter handles opsets {MIN_OPSET} to {max_opset()} "
                    "(re-export the model with a supported opset, or upgrade the onnx package)"
                )
            return v
    raise FormatError("the model imports no version of the default ONNX operator set (opset_import)")


# ONNX element types -> the dtype the runtime computes in.
_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
_INT32_TYPES = {TensorProto.INT32, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT8, TensorProto.UINT16}
_INT64_TYPES = {TensorProto.INT64, TensorProto.UINT32, TensorProto.UINT64}


def runtime_dtype(elem_type: int) -> str | None:
    """The runtime dtype of an ONNX element type, or None when it has none (strings, complex)."""
    if elem_type in _FLOAT_TYPES:
        return "float32"
    if elem_type in _INT32_TYPES:
        return "int32"
    if elem_type in _INT64_TYPES:
        return "int64"
    if elem_type == TensorProto.BOOL:
        return "bool"
    return None


_ONNX_TYPE = {"float32": TensorProto.FLOAT, "int32": TensorProto.INT32, "int64": TensorProto.INT64,
              "bool": TensorProto.BOOL}


def runtime_elem_type(elem_type: int) -> int:
    """The ONNX element type the converted graph computes in (FLOAT for DOUBLE, INT32 for INT8...)."""
    d = runtime_dtype(elem_type)
    return _ONNX_TYPE[d] if d is not None else elem_type


def convert_array(a: np.ndarray) -> np.ndarray:
    """A constant in the dtypes the runtime has: floats -> float32, small ints -> int32, wide
    ints -> int64, bool stays."""
    a = np.asarray(a)
    if a.dtype == np.float32 or a.dtype == np.int64 or a.dtype == np.int32 or a.dtype == np.bool_:
        return a
    if a.dtype.kind == "f":
        return a.astype(np.float32)
    if a.dtype in (np.int8, np.int16, np.uint8, np.uint16):
        return a.astype(np.int32)
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    raise FormatError(f"a constant of dtype {a.dtype} cannot be used (no runtime dtype holds it)")


def graph_nodes(graph: onnx.GraphProto, g: Graph, defined: set[str] | None = None) -> list[Node]:
    """The nodes of an ONNX graph (Constant nodes become constants of ``g``)."""
    nodes: list[Node] = []
    for i, n in enumerate(graph.node):
        name = n.name or f"{n.op_type}_{i}"
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            try:
                g.consts[n.output[0]] = convert_array(_constant_node_value(n))
            except FormatError:
                raise
            except Exception as e:  # noqa: BLE001
                raise FormatError(f"Constant node {name!r} cannot be read: {e}") from e
            if defined is not None:
                defined.add(n.output[0])
            continue
        if defined is not None:
            for inp in n.input:
                if inp and inp not in defined:
                    raise FormatError(
                        f"{n.op_type} node {name!r} reads tensor {inp!r}, which no initializer, graph input or "
                        "earlier node defines (truncated or unsorted graph)"
                    )
        # a file's node in sparsert's internal domain is an unknown custom op, never a trusted sparsert op
        domain = n.domain if n.domain != SPR else "spr (from the file)"
        attrs = {a.name: attr_value(a) for a in n.attribute}
        nodes.append(Node(n.op_type, list(n.input), list(n.output), attrs, name, where=name, domain=domain,
                          proto_attrs=list(n.attribute)))
        if defined is not None:
            defined.update(o for o in n.output if o)
    return nodes


def from_model(model: onnx.ModelProto) -> Graph:
    """Copy ``model.graph`` into a :class:`Graph`, validating what the converter relies on."""
    if not model.HasField("graph"):
        raise FormatError("not an ONNX model: no graph (empty, truncated or not a .onnx file)")
    opset = opset_of(model)
    gp = model.graph
    if not gp.output:
        raise FormatError("the ONNX graph has no outputs (truncated file?)")
    g = Graph(opset=opset)
    for init in gp.initializer:
        try:
            g.consts[init.name] = convert_array(numpy_helper.to_array(init))
        except FormatError:
            raise
        except Exception as e:  # noqa: BLE001 - protobuf/numpy raise many kinds
            raise FormatError(f"initializer {init.name!r} cannot be read: {e}") from e
    for sp in gp.sparse_initializer:
        g.consts[sp.values.name] = convert_array(_sparse_to_dense(sp))
    for vi in gp.input:
        if vi.name in g.consts:
            continue  # IR < 4 lists initializers as inputs too
        t = vi.type.tensor_type
        if t.HasField("shape"):
            dims: list[int | str | None] = []
            for d in t.shape.dim:
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(int(d.dim_value))
                elif d.HasField("dim_param") and d.dim_param:
                    dims.append(d.dim_param)
                else:
                    dims.append(None)
            g.input_dims[vi.name] = dims
        else:
            g.input_dims[vi.name] = None
        g.inputs[vi.name] = None
        g.input_types[vi.name] = int(t.elem_type)
    defined = set(g.consts) | set(g.inputs)
    g.nodes = graph_nodes(gp, g, defined)
    g.outputs = [o.name for o in gp.output]
    for o in g.outputs:
        if o not in defined:
            raise FormatError(f"graph output {o!r} is not produced by any node")
    for vi in list(gp.value_info) + list(gp.output):
        if vi.type.HasField("tensor_type"):
            g.elem_types[vi.name] = int(vi.type.tensor_type.elem_type)
    g.elem_types.update(g.input_types)
    g.output_protos = list(gp.output)
    g._taken = set(defined) | {o for n in g.nodes for o in n.outputs if o}
    return g
