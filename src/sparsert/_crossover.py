"""Warnings where the user's pruning defeats the runtime: layers with many zeros that still run
the dense kernels (below this machine's sparse/dense crossover for their shape), so the zeros
are multiplied anyway. Used by ``sparsert.export`` and ``sparsert.convert``."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

SPARSE_ENOUGH_TO_MENTION = 0.3  # below this, a dense kernel is the expected choice


def _is_sparse_kernel(kernel: str) -> bool:
    return any(tag in kernel for tag in ("sparse", "spmm", "csr", "bsr"))


def _weight_zeros(model_file: Any) -> dict[str, float]:
    """Node name -> fraction of zeros in its weight, for the Conv / Linear nodes of a file
    (whatever the storage: a 45%-sparse weight is usually stored dense)."""
    out: dict[str, float] = {}
    for node in model_file.nodes:
        if node.op_type not in ("Conv", "Linear") or len(node.inputs) < 2:
            continue
        t = model_file.tensor(node.inputs[1])
        if t is None or t.dtype != "float32":
            continue
        if t.storage == "dense":
            data = np.asarray(t.data)
            out[node.name] = float(np.count_nonzero(data == 0)) / data.size if data.size else 0.0
        else:
            dense = t.to_dense()
            out[node.name] = float(np.count_nonzero(dense == 0)) / dense.size if dense.size else 0.0
    return out


def dense_but_sparse(model: Any, model_file: Any = None) -> list[dict[str, Any]]:
    """Rows of ``model.summary()`` for Conv / Linear layers whose weight is at least 30% zeros but
    whose kernel is dense. ``model_file`` (a :class:`sparsert.format.ModelFile`) gives the zeros of
    weights stored dense; without it, only sparse-stored weights are seen."""
    zeros = _weight_zeros(model_file) if model_file is not None else {}
    try:
        summary = list(model.summary())
    except (ValueError, RuntimeError):
        return []  # no plan without input shapes (a dynamic model): kernels are chosen per shape at run time
    rows = []
    for r in summary:
        elements = r.get("weight_elements") or 0
        if not elements or r.get("op") not in ("Conv", "Linear"):
            continue
        sparsity = zeros.get(r["name"], 1.0 - (r.get("weight_nnz") or 0) / elements)
        if sparsity >= SPARSE_ENOUGH_TO_MENTION and not _is_sparse_kernel(str(r.get("kernel", ""))):
            rows.append(dict(r, sparsity=sparsity))
    return rows


def warn_dense_but_sparse(model: Any, model_file: Any, example: list[np.ndarray] | None, what: str,
                          stacklevel: int = 3) -> str | None:
    """Warns (and returns the message) when layers of ``model`` are sparse but run dense; with
    ``example`` inputs, profiles once to say how much of a run those layers take."""
    rows = dense_but_sparse(model, model_file)
    if not rows:
        return None
    share = ""
    if example is not None:
        try:
            model.profile(example, repeats=3)
            times = {r["name"]: r["time_ms"] for r in model.summary()}
            total = sum(t for t in times.values() if t)
            spent = sum(times.get(r["name"]) or 0.0 for r in rows)
            if total > 0:
                share = f"; they take {spent:.3g} of {total:.3g} ms per run here"
        except (ValueError, RuntimeError):
            share = ""
    low, high = min(r["sparsity"] for r in rows), max(r["sparsity"] for r in rows)
    names = ", ".join(r["name"] for r in rows[:6]) + (", ..." if len(rows) > 6 else "")
    message = (
        f"{what}: {len(rows)} layer(s) are {low:.0%}-{high:.0%} sparse but run the dense kernels, below this "
        f"machine's sparse/dense crossover for their shapes, so their zeros are multiplied anyway ({names}{share}). "
        "Prune them further (per layer, not one global threshold), leave them dense, or let "
        "sparsert.prune.budget_prune choose per-layer sparsities from measured timings"
    )
    warnings.warn(message, stacklevel=stacklevel)
    return message
