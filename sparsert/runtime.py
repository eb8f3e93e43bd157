"""The Python face of the native runtime: loading, input checking, running."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from sparsert import _core

ArrayLike = Any
Inputs = Union[np.ndarray, Sequence[ArrayLike], Mapping[str, ArrayLike]]


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: ``-1`` in ``shape`` is chosen at run time (e.g. the batch)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __str__(self) -> str:
        dims = ", ".join("?" if d < 0 else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


def load(path: str | os.PathLike[str], threads: int | None = None, verify: bool = True,
         tune: bool = False) -> Model:
    """Load a ``.spr`` model (memory-mapped; weights are used in place).

    threads: kernel threads for this model (default: one per core).
    verify: check the CRC-32 of the weights (the structure is always checked).
    tune: time sparse and dense kernels per layer on this machine at load and
        keep the faster (default: a cost model measured on x86 and ARM).
    Raises FileNotFoundError, sparsert.FormatError (a ValueError) for a bad
    file, sparsert.UnsupportedError for ops this build does not implement.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"expected a .spr file, got a directory: {path!r}")
    return Model(_core.Model.load(path, _threads(threads), bool(verify), bool(tune)), source=path)


def load_bytes(data: bytes | bytearray | memoryview, threads: int | None = None, verify: bool = True,
               tune: bool = False) -> Model:
    """Load a model from bytes in memory (copied; the caller may drop them)."""
    return Model(
        _core.Model.load_from_buffer(memoryview(data).cast("B"), _threads(threads), bool(verify), bool(tune))
    )


def _threads(threads: int | None) -> int:
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return int(threads)


class Model:
    """A loaded model. ``run`` may be called from several threads at once."""

    def __init__(self, core: _core.Model, source: str | None = None) -> None:
        self._core = core
        self.source = source
        self.inputs: list[TensorSpec] = [TensorSpec(d["name"], tuple(d["shape"]), d["dtype"]) for d in core.inputs]
        self.outputs: list[TensorSpec] = [
            TensorSpec(d["name"], tuple(d["shape"]), d["dtype"]) for d in core.outputs
        ]

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._core.metadata)

    @property
    def threads(self) -> int:
        return int(self._core.threads)

    def __repr__(self) -> str:
        ins = ", ".join(str(s) for s in self.inputs)
        outs = ", ".join(str(s) for s in self.outputs)
        return f"<sparsert.Model ({ins}) -> ({outs}), threads={self.threads}>"

    # -- running ------------------------------------------------------------
    def _prepare(self, inputs: Inputs) -> list[np.ndarray]:
        specs = self.inputs
        if isinstance(inputs, Mapping):
            names = [s.name for s in specs]
            unknown = [k for k in inputs if k not in names]
            missing = [n for n in names if n not in inputs]
            if unknown or missing:
                parts = []
                if missing:
                    parts.append(f"missing input(s) {missing}")
                if unknown:
                    parts.append(f"unknown input(s) {unknown}")
                raise ValueError(f"{'; '.join(parts)}; the model takes {names}")
            values = [inputs[n] for n in names]
        elif isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
            values = [inputs]
        else:
            values = list(inputs)
        if len(values) != len(specs):
            raise ValueError(
                f"the model takes {len(specs)} input(s) ({', '.join(str(s) for s in specs)}), got {len(values)}"
            )
        arrays = []
        for spec, value in zip(specs, values):
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
            if arr.dtype != np.float32:
                raise ValueError(
                    f"input '{spec.name}' has dtype {arr.dtype}, expected float32 "
                    f"(convert with x.astype(np.float32))"
                )
            if arr.ndim != len(spec.shape) or any(
                want >= 0 and want != got for want, got in zip(spec.shape, arr.shape)
            ):
                raise ValueError(f"input '{spec.name}' has shape {tuple(arr.shape)}, expected {_shape_str(spec.shape)}")
            arrays.append(np.ascontiguousarray(arr))
        return arrays

    def run(self, inputs: Inputs, *, as_dict: bool = False) -> Any:
        """Run the model.

        inputs: one array (single-input models), a list in the order of
        ``model.inputs``, or a dict by input name. Arrays must be float32;
        any memory layout is accepted (non-contiguous ones are copied).
        Returns one array for single-output models, else a list in the order
        of ``model.outputs`` (or a dict by name with ``as_dict=True``).
        """
        outs = self._core.run(self._prepare(inputs))
        if as_dict:
            return {spec.name: out for spec, out in zip(self.outputs, outs)}
        return outs[0] if len(outs) == 1 else list(outs)

    __call__ = run

    def output_shapes(self, *input_shapes: Sequence[int]) -> list[tuple[int, ...]]:
        return [tuple(s) for s in self._core.output_shapes([list(s) for s in input_shapes])]

    def profile(self, inputs: Inputs, repeats: int = 20) -> float:
        """Run ``repeats`` times timing each node; returns the median total in ms.
        ``summary()`` then shows the median per-node time for these shapes."""
        if repeats < 1:
            raise ValueError("repeats must be >= 1")
        return float(self._core.profile(self._prepare(inputs), int(repeats)))

    def summary(self, input_shapes: Sequence[Sequence[int]] | None = None) -> Summary:
        """Per node: op, shapes, weight storage, sparsity, nnz, bytes, FLOPs, kernel, time.

        input_shapes: one shape per input (default: the last run's shapes, or
        the declared shapes with -1 read as 1)."""
        shapes = [] if input_shapes is None else [list(s) for s in input_shapes]
        return Summary(self._core.summary(shapes))


def _shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join("any" if d < 0 else str(d) for d in shape) + ")"


class Summary(list):
    """A list of per-node dicts that prints as a table."""

    def totals(self) -> dict[str, float]:
        times = [r["time_ms"] for r in self if r["time_ms"] is not None]
        return {
            "weight_elements": sum(r["weight_elements"] for r in self),
            "weight_nnz": sum(r["weight_nnz"] for r in self),
            "weight_bytes": sum(r["weight_bytes"] for r in self),
            "flops": sum(r["flops"] for r in self),
            "dense_flops": sum(r["dense_flops"] for r in self),
            "time_ms": sum(times) if times else None,
        }

    def table(self) -> str:
        head = ["node", "op", "output", "storage", "sparsity", "nnz", "bytes", "MFLOP", "kernel", "ms"]
        rows = []
        for r in self:
            elements = r["weight_elements"]
            sparsity = f"{1 - r['weight_nnz'] / elements:.1%}" if elements else ""
            out = " ".join("x".join(str(d) for d in s) for s in r["output_shapes"])
            rows.append(
                [
                    r["name"],
                    r["op"],
                    out,
                    r["weight_storage"],
                    sparsity,
                    str(r["weight_nnz"]) if elements else "",
                    _bytes(r["weight_bytes"]) if elements else "",
                    f"{r['flops'] / 1e6:.2f}" if r["flops"] else "",
                    r["kernel"],
                    "" if r["time_ms"] is None else f"{r['time_ms']:.3f}",
                ]
            )
        t = self.totals()
        sparsity = f"{1 - t['weight_nnz'] / t['weight_elements']:.1%}" if t["weight_elements"] else ""
        rows.append(
            [
                "total",
                "",
                "",
                "",
                sparsity,
                str(t["weight_nnz"]),
                _bytes(t["weight_bytes"]),
                f"{t['flops'] / 1e6:.2f}",
                "",
                "" if t["time_ms"] is None else f"{t['time_ms']:.3f}",
            ]
        )
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
        lines.append("  ".join("-" * w for w in widths))
        for row in rows:
            lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
