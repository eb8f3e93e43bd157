"""ONNX -> ``.spr`` conversion (``sparsert.convert``). Needs the ``onnx`` package only.

    import sparsert
    sparsert.convert("model.onnx", "model.spr", input_shapes={"x": (1, 3, 224, 224)})

The steps, one module each:

1. ``_ir``: read the ONNX graph into plain Python objects (initializers and
   ``Constant`` nodes become numpy arrays); a broken file is a FormatError.
2. ``_fold``: freeze the input shapes, run ONNX shape inference, and fold
   every shape computation (Shape, Gather, Concat, ...) and every node of
   constant inputs into constants; drop Identity / Dropout / no-op Cast.
3. ``_patterns``: fuse exporter decompositions (GELU, SiLU, HardSwish,
   LayerNorm) into single ops.
4. ``_mappers``: map each ONNX op onto the op catalogue of
   docs/spr-format.md; everything that cannot be mapped is reported at once
   in one UnsupportedError.
5. :mod:`sparsert.ir`: the passes shared with the PyTorch exporter (BatchNorm
   and bias folding), optional magnitude pruning, topological order; the
   loader fuses residual adds and activations.
6. Emit with :func:`sparsert.ir.emit` (Linear / Conv weights stored sparse
   when sparse enough, ``storage="auto"``) and save atomically.

Shapes are frozen: the ``.spr`` inputs have exactly the shapes given (or the
model's own static shapes). See docs/onnx.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sparsert import FormatError, GraphBuilder, UnsupportedError
from sparsert import ir
from sparsert.onnx import _fold, _ir, _mappers, _patterns

__all__ = ["convert", "convert_model", "parse_input_shape", "parse_prune_spec"]

_PRUNE_METHODS = ("magnitude",)


def parse_prune_spec(spec: str) -> dict[str, Any]:
    """``"magnitude:0.9"`` -> ``{"method": "magnitude", "sparsity": 0.9}``.

    Options may follow: ``"magnitude:0.9:skip_first=0:skip_depthwise=1"``."""
    parts = [p.strip() for p in str(spec).split(":")]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"prune spec {spec!r}: expected METHOD:SPARSITY, e.g. 'magnitude:0.9'")
    method = parts[0].lower()
    try:
        sparsity = float(parts[1])
    except ValueError:
        raise ValueError(f"prune spec {spec!r}: sparsity {parts[1]!r} is not a number") from None
    out: dict[str, Any] = {"method": method, "sparsity": sparsity}
    for opt in parts[2:]:
        key, eq, value = opt.partition("=")
        if not eq or key not in ("skip_first", "skip_depthwise"):
            raise ValueError(
                f"prune spec {spec!r}: unknown option {opt!r} (skip_first=0|1, skip_depthwise=0|1)"
            )
        if value not in ("0", "1", "true", "false", "True", "False"):
            raise ValueError(f"prune spec {spec!r}: option {key} must be 0 or 1, got {value!r}")
        out[key] = value in ("1", "true", "True")
    return _check_prune(out)


def _check_prune(spec: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"prune must be a dict like {{'method': 'magnitude', 'sparsity': 0.9}}, got {spec!r}"
        )
    unknown = set(spec) - {"method", "sparsity", "skip_first", "skip_depthwise"}
    if unknown:
        raise ValueError(f"prune: unknown key(s) {sorted(unknown)}")
    method = spec.get("method", "magnitude")
    if method not in _PRUNE_METHODS:
        raise ValueError(f"prune method {method!r} is not supported; use one of {list(_PRUNE_METHODS)}")
    sparsity = spec.get("sparsity")
    if (
        isinstance(sparsity, bool)
        or not isinstance(sparsity, (int, float))
        or not 0.0 <= float(sparsity) <= 1.0
    ):
        raise ValueError(f"prune sparsity must be a number in [0, 1], got {sparsity!r}")
    return {
        "method": method,
        "sparsity": float(sparsity),
        "skip_first": bool(spec.get("skip_first", True)),
        "skip_depthwise": bool(spec.get("skip_depthwise", True)),
    }


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"x=1,3,224,224"`` -> ``("x", (1, 3, 224, 224))``. The name is what precedes the last ``=``."""
    name, eq, dims = str(text).rpartition("=")
    if not eq or not name:
        raise ValueError(f"input shape {text!r}: expected NAME=d0,d1,..., e.g. 'x=1,3,224,224'")
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise ValueError(f"input shape {text!r}: dims must be integers separated by commas") from None
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input shape {text!r}: every dim must be an integer >= 1")
    return name, shape


def _load_onnx(path: str | os.PathLike[str]) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such ONNX file: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"expected an .onnx file, got a directory: {path!r}")
    if os.path.getsize(path) == 0:
        raise FormatError(f"{path!r} is empty, not an ONNX model")
    try:
        return onnx.load(path)
    except DecodeError as e:
        raise FormatError(f"{path!r} is not a valid ONNX file (protobuf decoding failed: {e})") from e
    except (OSError, ValueError, RuntimeError) as e:
        raise FormatError(f"{path!r} cannot be loaded as ONNX: {e}") from e


def convert_model(
    model: Any,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    prune: Mapping[str, Any] | None = None,
    storage: str = "auto",
    name: str | None = None,
    source: str | None = None,
) -> GraphBuilder:
    """Convert an ``onnx.ModelProto`` into a :class:`GraphBuilder` (not yet written)."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"convert_model needs an onnx.ModelProto, got {type(model).__name__}")
    if storage not in ("auto", "dense", "csr"):
        raise ValueError(f"storage must be 'auto', 'dense' or 'csr', got {storage!r}")
    prune_spec = _check_prune(prune) if prune is not None else None

    g = _ir.from_model(model)
    non_float = {n: t for n, t in g.input_types.items() if t != onnx.TensorProto.FLOAT}
    if non_float:
        kinds = ", ".join(f"{n!r} ({onnx.TensorProto.DataType.Name(t)})" for n, t in non_float.items())
        raise UnsupportedError(f"sparsert models take float32 inputs only; this model has {kinds}")
    _fold.freeze_inputs(g, input_shapes)
    _fold.fold(g)
    const_outputs = [o for o in g.outputs if o in g.consts]
    if const_outputs:
        raise ValueError(f"graph output(s) {const_outputs} are constants (they do not depend on any input)")
    _patterns.fuse_patterns(g)
    _map_all(g)
    ir.optimize(g)
    if prune_spec is not None and prune_spec["sparsity"] > 0:
        ir.prune_weights(g, prune_spec["sparsity"], prune_spec["skip_first"], prune_spec["skip_depthwise"],
                         prune_spec.get("block", (1, 1)))
    g.topological_sort()
    return _emit(g, model, storage, name, source)


def _map_all(g: _ir.Graph) -> None:
    unsupported: dict[str, str] = {}  # op type -> first node name
    problems: list[str] = []
    new_nodes: list[_ir.Node] = []
    for node in g.nodes:
        if node.is_spr:
            new_nodes.append(node)
            continue
        fn = _mappers.MAPPERS.get(node.op) if node.domain in ("", "ai.onnx") else None
        if fn is None:
            key = node.op if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op}"
            unsupported.setdefault(key, node.name)
            continue
        try:
            new_nodes += fn(g, node)
        except _mappers.Unsupported as e:
            problems.append(f"{node.op} node {node.name!r}: {e}")
    if unsupported or problems:
        parts = []
        if unsupported:
            ops = ", ".join(f"{op} (first node {name!r})" for op, name in unsupported.items())
            parts.append(f"unsupported op type(s): {ops}")
        if problems:
            parts.append("unsupported use(s): " + "; ".join(problems))
        raise UnsupportedError(
            "cannot convert this ONNX model to sparsert ops. "
            + ". ".join(parts)
            + ". See docs/onnx.md for the supported ops."
        )
    g.nodes = new_nodes


def _emit(g: _ir.Graph, model: Any, storage: str, name: str | None, source: str | None) -> GraphBuilder:
    metadata: dict[str, Any] = {
        "onnx.opset": int(g.opset),
        "onnx.producer_name": model.producer_name or "",
        "onnx.producer_version": model.producer_version or "",
    }
    if source:
        metadata["onnx.source"] = os.path.basename(source)
    g.graph_inputs = [ir.Input(n, shape, "float32") for n, shape in g.inputs.items()]
    return ir.emit(g, name or model.graph.name or "model", "sparsert.convert", metadata, storage=storage)


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    prune: Mapping[str, Any] | None = None,
    storage: str = "auto",
    verify: bool = False,
) -> str:
    """Convert the ONNX file ``src`` into the ``.spr`` file ``dst`` (written atomically); returns ``dst``.

    input_shapes: ``{"x": (1, 3, 224, 224)}`` for inputs whose shape the model
        leaves symbolic; shapes are frozen in the ``.spr`` file.
    prune: ``{"method": "magnitude", "sparsity": 0.9}`` to magnitude-prune
        Conv2d/Linear weights per layer (skipping the first conv and
        depthwise convs unless ``skip_first``/``skip_depthwise`` are False).
    storage: ``"auto"`` (CSR for Linear/Conv2d weights with at least 50 %
        zeros), ``"dense"`` or ``"csr"``.
    verify: load the result, run it on random inputs and compare with the
        ONNX reference implementation (``onnx.reference``; slow on big models).

    Raises FileNotFoundError, sparsert.FormatError for a broken ONNX file,
    sparsert.UnsupportedError listing every op that cannot be converted, and
    ValueError for missing input shapes or bad arguments.
    """
    model = _load_onnx(src)
    builder = convert_model(
        model,
        input_shapes=input_shapes,
        prune=prune,
        storage=storage,
        name=os.path.splitext(os.path.basename(os.fspath(src)))[0],
        source=os.fspath(src),
    )
    if verify:
        _verify(model, builder, pruned=prune is not None)
    else:
        _check_loads(builder)
    return builder.save(dst)


def _check_loads(builder: GraphBuilder) -> None:
    """Never write a file the runtime would refuse: load the result once (no
    disk) and report why it fails, naming the node, before anything is saved."""
    from sparsert.errors import FormatError

    try:
        builder.load(threads=1)
    except MemoryError:
        raise
    except ValueError as e:  # FormatError, UnsupportedError and shape errors are all ValueErrors
        raise FormatError(f"the ONNX model converts to a graph the runtime cannot run: {e}") from e


def _verify(model: Any, builder: GraphBuilder, pruned: bool, seed: int = 0) -> None:
    from onnx.reference import ReferenceEvaluator

    rt = builder.load()
    rng = np.random.default_rng(seed)
    feeds = {s.name: rng.standard_normal(s.shape).astype(np.float32) for s in rt.inputs}
    got = rt.run(feeds, as_dict=True)
    for name, arr in got.items():
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"verify: output {name!r} of the converted model has NaN/Inf values")
    if pruned:
        return  # pruned weights change the function: only check that the model runs
    want = ReferenceEvaluator(model).run(None, feeds)
    for spec, ref in zip(rt.outputs, want):
        out = got[spec.name]
        ref = np.asarray(ref, dtype=np.float32)
        if out.shape != ref.shape:
            raise ValueError(f"verify: output {spec.name!r} has shape {out.shape}, ONNX gives {ref.shape}")
        tol = 1e-3 * max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
        err = float(np.max(np.abs(out - ref))) if ref.size else 0.0
        if err > tol:
            raise ValueError(
                f"verify: output {spec.name!r} differs from the ONNX reference by {err:.3g} "
                f"(tolerance {tol:.3g})"
            )
