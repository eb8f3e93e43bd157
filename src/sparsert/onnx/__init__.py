"""ONNX -> ``.spr`` conversion (``sparsert.convert``). Needs the ``onnx`` package only.

    import sparsert
    sparsert.convert("model.onnx", "model.spr")                     # symbolic dims stay free
    sparsert.convert("model.onnx", "model.spr", input_shapes={"x": (1, 3, 224, 224)})  # or fixed

The steps, one module each:

1. ``_ir``: read the ONNX graph into plain Python objects (initializers and
   ``Constant`` nodes become numpy arrays in the runtime's dtypes); a broken
   file is a FormatError, an unknown opset an UnsupportedError.
2. ``_fold``: input shapes (given, or the model's own with symbolic dims kept
   as -1 and their names), ONNX shape inference, constant folding (bounded by
   ``max_constant_bytes``), ``If`` with a constant condition inlined.
3. ``_patterns``: fuse exporter decompositions (GELU, SiLU, HardSwish,
   LayerNorm) into single ops.
4. ``_mappers``: map each ONNX op onto the op catalogue of docs/spr-format.md
   (mostly one to one: the runtime implements ONNX semantics, evaluates shape
   subgraphs per input shape, and keeps int64 / bool tensors); every op that
   cannot be mapped is reported at once in one UnsupportedError.
5. :mod:`sparsert.ir`: the passes shared with the PyTorch exporter (BatchNorm
   and bias folding), optional magnitude pruning, topological order; the
   loader fuses residual adds and activations.
6. Emit with :func:`sparsert.ir.emit` (Linear / Conv weights stored sparse
   when sparse enough, ``storage="auto"``) and save atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sparsert import FormatError, GraphBuilder, UnsupportedError, ir
from sparsert.onnx import _fold, _ir, _mappers, _patterns

__all__ = ["convert", "convert_model", "parse_block", "parse_input_shape", "parse_prune_spec"]

# Constants the converter folds may not exceed this many bytes each (a tiny ONNX file can ask
# for a huge ConstantOfShape / Expand / Tile); convert(max_constant_bytes=...) overrides it.
MAX_CONSTANT_BYTES = 256 << 20


def parse_block(text: str) -> tuple[int, int]:
    """``"4x1"`` -> ``(4, 1)``: a block of output x input units (each in [1, 64])."""
    from sparsert._blocks import check_block

    parts = str(text).lower().replace(",", "x").split("x")
    if len(parts) != 2:
        raise ValueError(f"block {text!r}: expected ROWSxCOLS, e.g. 4x1")
    try:
        return check_block((int(parts[0]), int(parts[1])))
    except ValueError as e:
        raise ValueError(f"block {text!r}: {e}") from None

_PRUNE_METHODS = ("magnitude",)


def parse_prune_spec(spec: str) -> dict[str, Any]:
    """``"magnitude:0.9"`` -> ``{"method": "magnitude", "sparsity": 0.9}``.

    Options may follow: ``"magnitude:0.9:skip_first=0:skip_depthwise=1:block=4x1"``."""
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
        if eq and key == "block":
            out["block"] = parse_block(value)
            continue
        if not eq or key not in ("skip_first", "skip_depthwise"):
            raise ValueError(
                f"prune spec {spec!r}: unknown option {opt!r} (skip_first=0|1, skip_depthwise=0|1, block=RxC)"
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
    unknown = set(spec) - {"method", "sparsity", "skip_first", "skip_depthwise", "block"}
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
        "block": parse_block("x".join(str(v) for v in spec["block"])) if "block" in spec else (1, 1),
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
        model = onnx.load(path)
    except DecodeError as e:
        raise FormatError(f"{path!r} is not a valid ONNX file (protobuf decoding failed: {e})") from e
    except (OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as e:
        raise FormatError(f"{path!r} cannot be loaded as ONNX: {e}") from e
    return model


def convert_model(
    model: Any,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    prune: Mapping[str, Any] | None = None,
    storage: str = "auto",
    name: str | None = None,
    source: str | None = None,
    block: tuple[int, int] | None = None,
    max_constant_bytes: int = MAX_CONSTANT_BYTES,
) -> GraphBuilder:
    """Convert an ``onnx.ModelProto`` into a :class:`GraphBuilder` (not yet written)."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"convert_model needs an onnx.ModelProto, got {type(model).__name__}")
    if storage not in ("auto", "dense", "csr", "bsr"):
        raise ValueError(f"storage must be 'auto', 'dense', 'csr' or 'bsr', got {storage!r}")
    if block is not None:
        from sparsert._blocks import check_block

        block = check_block(block)
    if storage == "bsr" and block is None:
        raise ValueError("storage='bsr' needs block=(rows, cols), e.g. (4, 1)")
    if isinstance(max_constant_bytes, bool) or not isinstance(max_constant_bytes, int) or max_constant_bytes < 1:
        raise ValueError(f"max_constant_bytes must be a positive int, got {max_constant_bytes!r}")
    prune_spec = _check_prune(prune) if prune is not None else None
    if prune_spec is not None and block is None and prune_spec["block"] != (1, 1):
        block = prune_spec["block"]

    g = _ir.from_model(model)
    bad = {n: t for n, t in g.input_types.items() if _ir.runtime_dtype(t) is None}
    if bad:
        kinds = ", ".join(f"{n!r} ({onnx.TensorProto.DataType.Name(t)})" for n, t in bad.items())
        raise UnsupportedError(f"inputs of types the runtime has no dtype for: {kinds}")
    _fold.resolve_inputs(g, input_shapes)
    _fold.fold(g, max_constant_bytes)
    const_outputs = [o for o in g.outputs if o in g.consts]
    if const_outputs:
        raise ValueError(f"graph output(s) {const_outputs} are constants (they do not depend on any input)")
    _patterns.fuse_patterns(g)
    _map_all(g)
    ir.optimize(g)
    if prune_spec is not None and prune_spec["sparsity"] > 0:
        ir.prune_weights(g, prune_spec["sparsity"], prune_spec["skip_first"], prune_spec["skip_depthwise"],
                         prune_spec["block"])
    g.remove_dead()
    g.topological_sort()
    return _emit(g, model, storage, name, source, block)


def _map_all(g: _ir.Graph) -> None:
    """Maps every node; every op that cannot be mapped is reported at once."""
    unsupported: dict[str, str] = {}  # op type -> first node name
    problems: list[str] = []
    new_nodes: list[_ir.Node] = []
    g.read_names = {i for n in g.nodes for i in n.inputs if i}
    for node in g.nodes:
        if node.is_spr:
            new_nodes.append(node)
            continue
        fn = _mappers.find_mapper(node.op) if node.domain in ("", "ai.onnx") else None
        if fn is None:
            key = node.op if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op}"
            unsupported.setdefault(key, node.name)
            continue
        try:
            new_nodes += fn(g, node)
        except _mappers.Unsupported as e:
            problems.append(f"{node.op} node {node.name!r}: {e}")
        except ValueError as e:  # a shape the mapper needed was unknown, a malformed attribute...
            problems.append(f"{node.op} node {node.name!r}: {e}")
    if unsupported or problems:
        parts = []
        if unsupported:
            ops = ", ".join(f"{op} (first node {name!r})" for op, name in unsupported.items())
            parts.append(f"unsupported op type(s): {ops}")
        if problems:
            parts.append("unsupported use(s): " + "; ".join(problems))
        raise UnsupportedError(
            "cannot convert this ONNX model to sparsert ops. " + ". ".join(parts)
            + ". See docs/onnx.md for the supported ops."
        )
    g.nodes = new_nodes


def _emit(g: _ir.Graph, model: Any, storage: str, name: str | None, source: str | None,
          block: tuple[int, int] | None) -> GraphBuilder:
    metadata: dict[str, Any] = {
        "onnx.opset": int(g.opset),
        "onnx.producer_name": model.producer_name or "",
        "onnx.producer_version": model.producer_version or "",
    }
    if source:
        metadata["onnx.source"] = os.path.basename(source)
    g.graph_inputs = [
        ir.Input(n, shape, _ir.runtime_dtype(g.input_types[n]) or "float32", g.input_dim_names.get(n, ()))
        for n, shape in g.inputs.items()
    ]
    return ir.emit(g, name or model.graph.name or "model", "sparsert.convert", metadata, storage=storage, block=block)


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    prune: Mapping[str, Any] | None = None,
    storage: str = "auto",
    verify: bool = False,
    block: tuple[int, int] | None = None,
    max_constant_bytes: int = MAX_CONSTANT_BYTES,
) -> str:
    """Convert the ONNX file ``src`` into the ``.spr`` file ``dst`` (written atomically); returns ``dst``.

    input_shapes: ``{"x": (1, 3, 224, 224)}`` fixes input shapes (and folds everything that depends
        only on them); by default dims the model leaves symbolic (batch, sequence) stay free and the
        runtime plans for each input shape it sees.
    prune: ``{"method": "magnitude", "sparsity": 0.9}`` to magnitude-prune Conv / Linear weights per
        layer, without fine-tuning (skipping the first conv and depthwise convs unless
        ``skip_first`` / ``skip_depthwise`` are False; ``block: (4, 1)`` prunes 4x1 blocks).
    storage: ``"auto"`` (sparse for Linear / Conv weights with at least 50 % zeros; BSR when
        ``block`` is given and divides the weight), ``"dense"``, ``"csr"`` or ``"bsr"``.
    verify: load the result, run it on random inputs and compare with the ONNX reference
        implementation (``onnx.reference``; slow on big models).
    max_constant_bytes: the largest constant folding may create (default 256 MiB).

    Raises FileNotFoundError, sparsert.FormatError for a broken ONNX file,
    sparsert.UnsupportedError listing every op that cannot be converted, and
    ValueError for bad input shapes or arguments.
    """
    model = _load_onnx(src)
    builder = convert_model(
        model, input_shapes=input_shapes, prune=prune, storage=storage,
        name=os.path.splitext(os.path.basename(os.fspath(src)))[0], source=os.fspath(src), block=block,
        max_constant_bytes=max_constant_bytes,
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
        model = builder.load()
    except MemoryError:
        raise
    except ValueError as e:  # FormatError, UnsupportedError and shape errors are all ValueErrors
        raise FormatError(f"the ONNX model converts to a graph the runtime cannot run: {e}") from e
    from sparsert._crossover import warn_dense_but_sparse

    warn_dense_but_sparse(model, builder.build(), None, "convert", stacklevel=5)


def _verify(model: Any, builder: GraphBuilder, pruned: bool, seed: int = 0) -> None:
    """Runs the converted model and onnx.reference on the same random inputs; with dynamic dims,
    at two sizes of them (1 and 3)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    rt = builder.load()
    from sparsert._crossover import warn_dense_but_sparse

    warn_dense_but_sparse(rt, builder.build(), None, "convert", stacklevel=5)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.input}
    dynamic = any(d < 0 for s in rt.inputs for d in s.shape)
    for size in (1, 3) if dynamic else (1,):
        rng = np.random.default_rng(seed + size)
        feeds: dict[str, np.ndarray] = {}
        for s in rt.inputs:
            shape = tuple(size if d < 0 else d for d in s.shape)
            if s.dtype == "float32":
                feeds[s.name] = rng.standard_normal(shape).astype(np.float32)
            elif s.dtype == "bool":
                feeds[s.name] = rng.random(shape) < 0.5
            else:
                feeds[s.name] = rng.integers(0, 2, size=shape).astype(s.dtype)
        got = rt.run(feeds, as_dict=True)
        for name, arr in got.items():
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ValueError(f"verify: output {name!r} of the converted model has NaN/Inf values")
        if pruned:
            return  # pruned weights change the function: only check that the model runs
        ort_feeds = {n: v.astype(helper.tensor_dtype_to_np_dtype(types[n])) if n in types else v
                     for n, v in feeds.items()}
        try:
            want = ReferenceEvaluator(model).run(None, ort_feeds)
        except Exception as e:  # noqa: BLE001 - onnx.reference lacks some ops
            raise ValueError(f"verify: the ONNX reference implementation could not run this model ({e})") from None
        for spec, ref in zip(rt.outputs, want):
            out = got[spec.name]
            ref = np.asarray(ref)
            if out.shape != ref.shape:
                raise ValueError(f"verify: output {spec.name!r} has shape {out.shape}, ONNX gives {ref.shape}")
            ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
            tol = 1e-3 * max(1.0, float(np.max(np.abs(ref64))) if ref.size else 1.0)
            err = float(np.max(np.abs(out64 - ref64))) if ref.size else 0.0
            if err > tol:
                raise ValueError(
                    f"verify: output {spec.name!r} differs from the ONNX reference by {err:.3g} (tolerance {tol:.3g})"
                )
