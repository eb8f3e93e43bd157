"""Export an ordinary (possibly pruned) ``torch.nn.Module`` to a ``.spr`` file.

    import sparsert
    result = sparsert.export(model, torch.randn(1, 3, 32, 32), "model.spr", verify=True)
    print(result.summary)

Steps (docs/export.md): physically remove structurally pruned channels with
:func:`sparsert.prune.shrink`; trace with ``torch.fx`` (:mod:`._lower`) into the shared graph of
:mod:`sparsert.ir`; run its passes (BatchNorm and bias folding); write every layer weight dense,
CSR or BSR; run the result on the example input and compare it with the PyTorch model (the
loader fuses residual adds and activations); write atomically.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsert import format as spr
from sparsert import ir
from sparsert.graph import GraphBuilder

from ._lower import UnsupportedOpError, effective_param, lower, trace
from ._registry import opaque_advice

__all__ = ["ExportResult", "UnsupportedOpError", "effective_param", "export"]

STORAGES = ("auto", "dense", "csr", "bsr")


@dataclass
class ExportResult:
    """What :func:`export` wrote and how well it matches PyTorch.

    ``max_rel_error`` is ``max|y − y_torch| / max|y_torch|`` per output (the largest over outputs);
    ``dense_size`` is the file size had every weight been stored dense; ``n_csr`` / ``n_dense``
    count the layer weights (Linear, Conv2d, ConvTranspose2d) stored each way; ``shrunk_layers``
    maps each layer whose output channels were physically removed to ``(old, new)`` counts.
    """

    path: str
    max_abs_error: float
    max_rel_error: float
    file_size: int
    dense_size: int
    n_csr: int
    n_dense: int
    shrunk_layers: dict[str, tuple[int, int]] = field(default_factory=dict)
    summary: str = ""

    def __str__(self) -> str:
        return self.summary


def _as_inputs(example_inputs: Any) -> tuple[torch.Tensor, ...]:
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not inputs:
        raise ValueError("example_inputs is empty; pass one tensor per model input")
    for i, t in enumerate(inputs):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"example_inputs[{i}] is a {type(t).__name__}, expected a torch.Tensor")
        if t.dtype != torch.float32:
            raise ValueError(f"example_inputs[{i}] has dtype {t.dtype}; the runtime takes float32 inputs")
        if t.dim() == 0 or t.numel() == 0:
            raise ValueError(f"example_inputs[{i}] has shape {tuple(t.shape)}; it needs a batch dim and data")
    return inputs


def _flat_outputs(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _flat_outputs(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flat_outputs(v)]
    raise TypeError(
        f"model output of type {type(value).__name__} is not supported (tensors, tuples, lists, dicts)"
    )


def _out_channels(module: nn.Module) -> int | None:
    for attr in ("out_channels", "out_features", "num_features"):
        if isinstance(getattr(module, attr, None), int):
            return int(getattr(module, attr))
    return None


def _shrink(
    model: nn.Module, inputs: tuple[torch.Tensor, ...]
) -> tuple[nn.Module, dict[str, tuple[int, int]]]:
    """The physically smaller copy when ``sparsert.prune`` recorded structured removals."""
    from sparsert import prune

    info = prune.pruning_info(model)
    structured = [name for name, entry in info.items() if entry["kind"] == "structured"]
    if not structured:
        return model, {}
    small = prune.shrink(model, inputs if len(inputs) > 1 else inputs[0])
    old, new = dict(model.named_modules()), dict(small.named_modules())
    shrunk: dict[str, tuple[int, int]] = {}
    for name in structured:
        before, after = _out_channels(old[name]), _out_channels(new[name])
        if before is not None and after is not None and before != after:
            shrunk[name] = (before, after)
    return small, shrunk


def _emit(graph: ir.Graph, name: str, storage: str, metadata: dict[str, Any],
          block: tuple[int, int] | None = None) -> GraphBuilder:
    outputs = ["output"] if len(graph.outputs) == 1 else [f"output_{k}" for k in range(len(graph.outputs))]
    # a tensor returned twice keeps its name the second time
    seen: set[str] = set()
    names = []
    for value, wanted in zip(graph.outputs, outputs):
        names.append(value if value in seen else wanted)
        seen.add(value)
    return ir.emit(graph, name, "sparsert.export", metadata, storage=storage, block=block, output_names=names)


def _weight_counts(model_file: spr.ModelFile) -> tuple[int, int]:
    weights = {n.inputs[1] for n in model_file.nodes if n.op_type in ir.LAYER_OPS}
    sparse = sum(1 for t in model_file.tensors if t.name in weights and t.storage != "dense")
    return sparse, len(weights) - sparse


def _compare(expected: Sequence[torch.Tensor], got: Sequence[np.ndarray]) -> tuple[float, float, str]:
    worst_abs, worst_rel, where = 0.0, 0.0, ""
    for k, (e, g) in enumerate(zip(expected, got)):
        ref = e.detach().cpu().numpy().astype(np.float64)
        out = np.asarray(g, dtype=np.float64)
        if ref.shape != out.shape:
            return math.inf, math.inf, f"output {k} has shape {out.shape}, PyTorch gives {ref.shape}"
        if ref.size == 0:
            continue
        if not np.all(np.isfinite(out)):
            return math.inf, math.inf, f"output {k} holds NaN/Inf"
        err = float(np.max(np.abs(out - ref)))
        scale = float(np.max(np.abs(ref)))
        rel = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
        if rel >= worst_rel:
            where = f"output {k}"
        worst_abs, worst_rel = max(worst_abs, err), max(worst_rel, rel)
    return worst_abs, worst_rel, where


def export(
    model: nn.Module,
    example_inputs: Any,
    path: str | os.PathLike[str],
    storage: str = "auto",
    verify: bool = False,
    rtol: float = 1e-4,
    threads: int | None = None,
    block: tuple[int, int] | None = None,
) -> ExportResult:
    """Export ``model`` (evaluated in eval mode) to ``path`` and check it against PyTorch.

    example_inputs: a float32 tensor, or a tuple of them (one per ``forward`` argument). Its
        dim 0 is the batch; the file takes any batch size there.
    storage: ``"auto"`` (sparse for layer weights with at least 50% zeros, see
        ``sparsert.graph.CSR_MIN_SPARSITY``: 4x1-block BSR when the weight was block-pruned so
        that it is the smaller file, else CSR), ``"dense"``, ``"csr"`` or ``"bsr"`` (every
        Linear/Conv2d weight).
    block: the BSR block ``(rows, cols)`` for ``storage="bsr"`` (or for ``"auto"``), e.g. ``(4, 1)``.
        The runtime finds 4x1 blocks in any storage; BSR only makes the file smaller.
    verify: raise ValueError (and write nothing) when ``max_rel_error > rtol`` or the runtime
        cannot run the file; without it the errors are only reported.
    threads: kernel threads for the check run.

    Raises UnsupportedOpError (a sparsert.UnsupportedError) listing every op it cannot map.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    advice = opaque_advice(model)
    if advice is not None:  # before running it: these may not even take the example inputs
        raise UnsupportedOpError(f"cannot export {type(model).__name__} with sparsert.export: {advice}")
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    if block is not None:
        from sparsert._blocks import check_block

        block = check_block(block)
    if storage == "bsr" and block is None:
        raise ValueError("storage='bsr' needs block=(rows, cols), e.g. (4, 1)")
    if (
        isinstance(rtol, bool)
        or not isinstance(rtol, (int, float))
        or not rtol > 0
        or not math.isfinite(rtol)
    ):
        raise ValueError(f"rtol must be a positive finite number, got {rtol!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path!r}: it is a directory")
    inputs = _as_inputs(example_inputs)
    model_name = type(model).__name__

    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            expected = _flat_outputs(model(*inputs))
            work, shrunk = _shrink(model, inputs)
            work.eval()
            graph = lower(trace(work), inputs, model_name)
    finally:
        for m, training in modes:
            m.training = training
    if len(graph.outputs) != len(expected):
        raise UnsupportedOpError(
            f"cannot export {model_name}: the traced graph has {len(graph.outputs)} output(s), the model "
            f"returns {len(expected)}"
        )
    fusions = ir.optimize(graph)
    metadata = {"export.rewrites": ", ".join(f"{k}={v}" for k, v in fusions.items())}
    if shrunk:  # read by `sparsert inspect` to mark physically shrunk layers
        metadata["export.shrunk"] = ", ".join(f"{n} {a}->{b}" for n, (a, b) in shrunk.items())
    builder = _emit(graph, model_name, storage, metadata, block)
    model_file = builder.build()
    blob = spr.to_bytes(model_file)
    dense_size = len(spr.to_bytes(_emit(graph, model_name, "dense", metadata).build()))
    n_csr, n_dense = _weight_counts(model_file)

    from sparsert.runtime import load_bytes

    problem = ""
    try:
        runtime_model = load_bytes(blob, threads=threads)
        got = runtime_model.run([t.detach().cpu().numpy() for t in inputs])
        got = [got] if isinstance(got, np.ndarray) else list(got)
        max_abs, max_rel, where = _compare(expected, got)
        if max_rel > rtol:
            problem = (
                f"{where} differs from PyTorch: max abs error {max_abs:.3g}, max rel error {max_rel:.3g} > "
                f"rtol {rtol:g}"
            )
    except (ValueError, RuntimeError) as e:  # sparsert.UnsupportedError / FormatError are ValueErrors
        max_abs = max_rel = math.nan
        problem = f"the runtime could not run the exported graph: {type(e).__name__}: {e}"
    if verify and problem:
        raise ValueError(f"export of {model_name} failed verification ({path!r} not written): {problem}")
    crossover_note = None
    if not problem:
        from sparsert._crossover import warn_dense_but_sparse

        crossover_note = warn_dense_but_sparse(
            runtime_model, model_file, [t.detach().cpu().numpy() for t in inputs], f"export of {model_name}",
            stacklevel=4,
        )

    builder.save(path)  # atomic: temp file + fsync + rename
    op_counts = Counter(op.op for op in graph.nodes)
    lines = [
        f"{model_name} -> {path}: {len(graph.nodes)} ops ("
        + ", ".join(f"{n}x{op}" for op, n in sorted(op_counts.items()))
        + ")",
        f"  layer weights: {n_csr} CSR, {n_dense} dense; file {len(blob)} bytes "
        f"(all-dense {dense_size} bytes, {len(blob) / dense_size:.1%})",
        f"  rewrites: {metadata['export.rewrites']}",
    ]
    if shrunk:
        lines.append("  shrunk: " + ", ".join(f"{n} {a}->{b}" for n, (a, b) in shrunk.items()))
    if crossover_note:
        lines.append(f"  WARNING: {crossover_note}")
    lines.append(
        f"  vs PyTorch: max abs error {max_abs:.3g}, max rel error {max_rel:.3g}"
        + (f"  WARNING: {problem}" if problem else "")
    )
    return ExportResult(
        path=path,
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        file_size=len(blob),
        dense_size=dense_size,
        n_csr=n_csr,
        n_dense=n_dense,
        shrunk_layers=shrunk,
        summary="\n".join(lines),
    )
