"""The Python face of the native runtime: loading, input checking, running, and an
onnxruntime-compatible session (:class:`InferenceSession`)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from sparsert import _native

ArrayLike = Any
Inputs = Union[np.ndarray, Sequence[ArrayLike], Mapping[str, ArrayLike]]

_log = logging.getLogger("sparsert")

_NUMPY_DTYPES = {"float32": np.dtype(np.float32), "int32": np.dtype(np.int32),
                 "int64": np.dtype(np.int64), "bool": np.dtype(np.bool_)}
_ORT_TYPES = {"float32": "tensor(float)", "int32": "tensor(int32)", "int64": "tensor(int64)", "bool": "tensor(bool)"}
_ISAS = ("scalar", "avx2", "avx512", "neon")


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: ``-1`` in ``shape`` is chosen at run time (a batch or a
    sequence length); ``dim_names`` names those dims (``""`` for fixed ones). ``shape`` is
    None for an output of a dynamic model whose rank is only known once the input shapes
    are (``Model.output_shapes``)."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str = "float32"
    dim_names: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.name}: {self.dtype}[shape known at run time]"
        names = self.dim_names or ("",) * len(self.shape)
        dims = ", ".join((n or "?") if d < 0 else str(d) for d, n in zip(self.shape, names))
        return f"{self.name}: {self.dtype}[{dims}]"


def _options(threads: int | None, verify: bool, tune: bool, mmap: bool, isa: str | None,
             disable_passes: Sequence[str] | None) -> dict[str, Any]:
    opts: dict[str, Any] = {"threads": _threads(threads), "verify": bool(verify), "tune": bool(tune),
                            "mmap": bool(mmap)}
    if isa is not None:
        if isa not in _ISAS:
            raise ValueError(f"isa must be one of {list(_ISAS)} or None (the best this CPU runs), got {isa!r}")
        opts["isa"] = isa
    if disable_passes:
        if isinstance(disable_passes, str):
            disable_passes = [disable_passes]
        opts["disabled_passes"] = [str(p) for p in disable_passes]
    return opts


def load(path: str | os.PathLike[str], threads: int | None = None, verify: bool = True, tune: bool = False,
         *, mmap: bool = False, isa: str | None = None, disable_passes: Sequence[str] | None = None,
         **kernel_options: Any) -> Model:
    """Load a ``.spr`` model.

    threads: kernel threads for this model (default: every core this process may use).
    verify: check the CRC-32 of the weights (the structure is always checked).
    tune: time sparse and dense kernels per layer on this machine and keep the faster
        (default: a cost model measured on x86 and ARM). The choices are kept in a cache
        file, so a second load of the same layers on this machine is instant:
        ``tune_cache=`` a path, or ``False`` for none (default: ``$SPARSERT_TUNE_CACHE``,
        else ``tune-v1.tsv`` in ``$SPARSERT_CACHE_DIR``, else in ``$XDG_CACHE_HOME/sparsert``,
        else in ``~/.cache/sparsert``: the folder of the latency tables).
    mmap: use the file's pages in place instead of reading it into private memory:
        faster to load and less memory for big models, but the file must not change or
        be truncated while the model is loaded.
    isa: cap the kernels at ``"scalar"``, ``"avx2"``, ``"avx512"`` or ``"neon"``
        (default: the best this CPU runs); :func:`sparsert.supported_isas` lists them.
    disable_passes: load-time rewrites to skip by name (``sparsert._core.pass_names()``).
    kernel_options: ``layer_kernel="auto"|"sparse"|"dense"``, ``conv_sparse_path=
        "auto"|"direct"|"im2col"``, ``conv_dense_path="auto"|"winograd"|"im2col"``,
        ``max_cached_plans=8`` (tests and benchmarks), ``tune_cache`` (above).
    Raises FileNotFoundError, sparsert.FormatError (a ValueError) for a bad
    file, sparsert.UnsupportedError for ops this build does not implement.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"expected a .spr file, got a directory: {path!r}")
    opts = _options(threads, verify, tune, mmap, isa, disable_passes)
    opts.update(_kernel_options(kernel_options))
    core = _native.core().Model.load(path, opts)  # refuses FIFOs, devices... before any read here
    model = Model(core, source=path, options=opts)
    model._fingerprint, model._abspath = _header(path), os.path.abspath(path)
    return model


_HEADER_BYTES = 48  # magic, version, sizes and both CRC-32s (docs/spr-format.md, section 2)


def _header(path: str) -> bytes:
    """The file's header: its sizes and checksums identify its contents."""
    if not os.path.isfile(path):
        return b""  # only regular files (opening a FIFO would block)
    try:
        with open(path, "rb") as f:
            return f.read(_HEADER_BYTES)
    except OSError:
        return b""


def load_bytes(data: bytes | bytearray | memoryview, threads: int | None = None, verify: bool = True,
               tune: bool = False, *, isa: str | None = None, disable_passes: Sequence[str] | None = None,
               **kernel_options: Any) -> Model:
    """Load a model from bytes in memory (copied; the caller may drop them)."""
    opts = _options(threads, verify, tune, False, isa, disable_passes)
    opts.pop("mmap")
    opts.update(_kernel_options(kernel_options))
    blob = bytes(data)
    core = _native.core().Model.load_from_buffer(memoryview(blob), opts)
    return Model(core, blob=blob, options=opts)


def _kernel_options(options: Mapping[str, Any]) -> dict[str, Any]:
    known = {"layer_kernel", "conv_sparse_path", "conv_dense_path", "max_cached_plans", "tune_cache"}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"unknown load option(s) {sorted(unknown)}; known: {sorted(known)}")
    out = dict(options)
    if "tune_cache" in out:
        cache = out.pop("tune_cache")
        if cache is None or cache is True:
            pass  # the default file
        elif cache is False:
            out["tune_cache"] = "off"
        elif isinstance(cache, (str, os.PathLike)) and os.fspath(cache):
            out["tune_cache"] = os.path.abspath(os.fspath(cache))
        else:
            raise ValueError("tune_cache must be a file path, True / None (the default file) or "
                             f"False (none), got {cache!r}")
    return out


def _threads(threads: int | None) -> int:
    """The one rule of Python, the CLI and C++ (LoadOptions::threads): None or 0 = every usable
    core; more than the usable cores is capped to them, with a warning."""
    if threads is None:
        return 0
    limit = int(_native.core().max_threads)
    cores = int(_native.core().default_threads())
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 0 <= threads <= limit:
        raise ValueError(
            f"threads must be an integer in [0, {limit}] or None (0 and None: every core), got {threads!r}; "
            f"this machine has {cores} usable core(s)"
        )
    if threads > cores:
        warnings.warn(
            f"threads={int(threads)} is more than the {cores} core(s) this process may use: using {cores} "
            "(more threads than cores only makes every node wait for descheduled threads)",
            stacklevel=4,  # the caller of sparsert.load / load_bytes
        )
    return int(threads)


def _spec(d: Mapping[str, Any]) -> TensorSpec:
    shape = None if d["shape"] is None else tuple(d["shape"])
    return TensorSpec(d["name"], shape, d["dtype"], tuple(d.get("dim_names", ())))


class Model:
    """A loaded model. ``run`` may be called from several threads at once.

    A Model pickles: the other side loads the same file again (by path, or from the
    bytes it was loaded from), which is how a worker process of a Dask or Ray cluster
    gets its own copy.
    """

    def __init__(self, core: Any, source: str | None = None, blob: bytes | None = None,
                 options: dict[str, Any] | None = None) -> None:
        self._core = core
        self.source = source
        self._blob = blob
        self._options = dict(options or {})
        self.inputs: list[TensorSpec] = [_spec(d) for d in core.inputs]
        self.outputs: list[TensorSpec] = [_spec(d) for d in core.outputs]
        for line in core.load_log:
            _log.debug("%s: %s", source or "model", line)

    _fingerprint: bytes = b""
    _abspath: str | None = None

    def __reduce__(self) -> Any:
        """By path (absolute, with the file's header to check that the other side reads the same
        file: same node, shared or copied file), or by the bytes a load_bytes model came from."""
        if self.source is not None:
            return (_reload_path, (self._abspath or os.path.abspath(self.source), self._options, self._fingerprint))
        return (_reload_bytes, (self._blob, self._options))

    @property
    def metadata(self) -> dict[str, Any]:
        """The file's metadata with its stored types (str, int, float, lists)."""
        return dict(self._core.metadata_values)

    @property
    def threads(self) -> int:
        return int(self._core.threads)

    @property
    def isa(self) -> str:
        """The kernel set this model runs (``load(isa=...)``)."""
        return str(self._core.isa)

    @property
    def nodes(self) -> list[Any]:
        """The graph as it runs: the file's nodes after the load-time rewrites (fused activations
        and residual adds), as :class:`sparsert.format.Node` objects."""
        from sparsert.format import Node

        return [Node(n["op_type"], list(n["inputs"]), list(n["outputs"]), dict(n["attrs"]), n["name"])
                for n in self._core.nodes]

    @property
    def load_log(self) -> list[str]:
        """Load-time decisions (rewrite passes applied), also logged on the ``sparsert`` logger."""
        return list(self._core.load_log)

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
        return [check_input(spec, value) for spec, value in zip(specs, values)]

    def run(self, inputs: Inputs, *, as_dict: bool = False, out: Any = None) -> Any:
        """Run the model.

        inputs: one array (single-input models), a list in the order of
        ``model.inputs``, or a dict by input name. Each array must have the
        input's dtype (``model.inputs[i].dtype``; no silent casts); any memory
        layout is accepted (non-contiguous arrays are copied).
        out: optional arrays to write the outputs into (one array, or a list /
        dict like the result): C-contiguous, writeable, of the output's shape and
        dtype; nothing is allocated for them (onnxruntime's IOBinding idea).
        Returns one array for single-output models, else a list in the order of
        ``model.outputs`` (or a dict by name with ``as_dict=True``).
        """
        arrays = self._prepare(inputs)
        if out is None:
            outs = self._core.run(arrays)
        else:
            outs = self._out_arrays(out, arrays)
            self._core.run_into(arrays, outs)
        if as_dict:
            return {spec.name: o for spec, o in zip(self.outputs, outs)}
        return outs[0] if len(outs) == 1 else list(outs)

    __call__ = run

    def _out_arrays(self, out: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if isinstance(out, Mapping):
            missing = [s.name for s in self.outputs if s.name not in out]
            if missing:
                raise ValueError(f"out is missing output(s) {missing}")
            outs = [out[s.name] for s in self.outputs]
        elif isinstance(out, np.ndarray):
            outs = [out]
        else:
            outs = list(out)
        if len(outs) != len(self.outputs):
            raise ValueError(f"out needs {len(self.outputs)} array(s), got {len(outs)}")
        shapes = self._core.output_shapes([list(a.shape) for a in arrays])
        for spec, a, shape in zip(self.outputs, outs, shapes):
            want = _NUMPY_DTYPES[spec.dtype]
            if not isinstance(a, np.ndarray) or a.dtype != want or tuple(a.shape) != tuple(shape):
                got = f"{a.dtype}{tuple(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(f"out for output '{spec.name}' must be a {want} array of shape {tuple(shape)}, "
                                 f"got {got}")
            if not a.flags.c_contiguous or not a.flags.writeable:
                raise ValueError(f"out for output '{spec.name}' must be C-contiguous and writeable")
        return outs

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

    def release_memory(self) -> None:
        """Free cached execution plans and idle activation buffers (rebuilt on the next run)."""
        self._core.release_memory()

    @property
    def cached_bytes(self) -> int:
        """Bytes held by idle activation buffers between runs."""
        return int(self._core.cached_bytes)


def _reload_path(path: str, options: dict[str, Any], fingerprint: bytes = b"") -> Model:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"unpickling a sparsert Model: no model file {path!r} here (a Model pickles as its path: give "
            "every machine the file at the same path, or load it with sparsert.load_bytes(open(path, 'rb')"
            ".read()) so that it pickles as its bytes)"
        )
    if fingerprint and _header(path) != fingerprint:
        raise ValueError(
            f"unpickling a sparsert Model: {path!r} is not the file the model was loaded from (its sizes or "
            "checksums differ; it was rewritten or is another version); copy the same file, or pickle a "
            "model loaded with sparsert.load_bytes"
        )
    model = Model(_native.core().Model.load(path, options), source=path, options=options)
    model._fingerprint, model._abspath = fingerprint, path
    return model


def _reload_bytes(blob: bytes, options: dict[str, Any]) -> Model:
    return Model(_native.core().Model.load_from_buffer(memoryview(blob), options), blob=blob, options=options)


def check_input(spec: TensorSpec, value: ArrayLike) -> np.ndarray:
    """``value`` as a C-contiguous array of the input's dtype and a compatible shape, or
    ValueError saying what is wrong and how to convert. The same rule for the Python API and
    the command line: dtypes must match exactly (onnxruntime's rule; a silent cast would hide
    a copy and a precision change)."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    want = _NUMPY_DTYPES[spec.dtype]
    if arr.dtype != want:
        hint = f"x.astype(np.{want.name})" if want.name != "bool" else "x.astype(bool)"
        raise ValueError(f"input '{spec.name}' has dtype {arr.dtype}, expected {want.name} (convert with {hint})")
    if arr.ndim != len(spec.shape) or any(want_d >= 0 and want_d != got for want_d, got in zip(spec.shape, arr.shape)):
        raise ValueError(f"input '{spec.name}' has shape {tuple(arr.shape)}, expected {_shape_str(spec)}")
    return np.require(arr, requirements="C")  # keeps 0-d arrays 0-d


def _shape_str(spec: TensorSpec) -> str:
    names = spec.dim_names or ("",) * len(spec.shape)
    return "(" + ", ".join((n or "any") if d < 0 else str(d) for d, n in zip(spec.shape, names)) + ")"


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
                    r["name"], r["op"], out, r["weight_storage"], sparsity,
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
                "total (sum of nodes)", "", "", "", sparsity, str(t["weight_nnz"]), _bytes(t["weight_bytes"]),
                f"{t['flops'] / 1e6:.2f}", "", "" if t["time_ms"] is None else f"{t['time_ms']:.3f}",
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


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# --------------------------------------------------------------------------- onnxruntime-style session


@dataclass
class SessionOptions:
    """The parts of ``onnxruntime.SessionOptions`` that mean something here.

    intra_op_num_threads: kernel threads (0 = every usable core, as onnxruntime).
    inter_op_num_threads, graph_optimization_level, execution_mode, log_severity_level:
    accepted and ignored (sparsert runs nodes in order, with its rewrite passes always on
    unless ``disabled_passes`` names them).
    """

    intra_op_num_threads: int = 0
    inter_op_num_threads: int = 0
    graph_optimization_level: Any = None
    execution_mode: Any = None
    log_severity_level: int = 2
    enable_mem_pattern: bool = True
    enable_cpu_mem_arena: bool = True
    disabled_passes: list[str] = field(default_factory=list)
    tune: bool = False


@dataclass(frozen=True)
class NodeArg:
    """What ``InferenceSession.get_inputs()`` / ``get_outputs()`` return, as onnxruntime's
    NodeArg: ``shape`` holds ints for fixed dims and the dim's name (or None) for dynamic ones."""

    name: str
    shape: list[Any]
    type: str


class InferenceSession:
    """Run a ``.spr`` model with onnxruntime's API, so that code written for onnxruntime
    runs on sparsert by changing the import::

        sess = sparsert.InferenceSession("model.spr")
        y, = sess.run(None, {sess.get_inputs()[0].name: x})

    path_or_bytes: a ``.spr`` path or its bytes (an ``.onnx`` file is refused with a
    pointer to ``sparsert convert``). ``providers`` is accepted and ignored.
    """

    def __init__(self, path_or_bytes: str | os.PathLike[str] | bytes, sess_options: SessionOptions | None = None,
                 providers: Sequence[Any] | None = None, provider_options: Any = None, **kwargs: Any) -> None:
        opts = sess_options or SessionOptions()
        threads = int(getattr(opts, "intra_op_num_threads", 0) or 0)
        common = {"threads": threads or None, "tune": bool(getattr(opts, "tune", False)),
                  "disable_passes": list(getattr(opts, "disabled_passes", []) or [])}
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            self._model = load_bytes(path_or_bytes, **common)
        else:
            self._model = load(path_or_bytes, **common)
        self._inputs = [self._arg(s) for s in self._model.inputs]
        self._outputs = [self._arg(s) for s in self._model.outputs]

    @staticmethod
    def _arg(spec: TensorSpec) -> NodeArg:
        if spec.shape is None:  # rank known only at run time (onnxruntime: no shape either)
            return NodeArg(spec.name, None, _ORT_TYPES[spec.dtype])  # type: ignore[arg-type]
        names = spec.dim_names or ("",) * len(spec.shape)
        shape = [d if d >= 0 else (n or None) for d, n in zip(spec.shape, names)]
        return NodeArg(spec.name, shape, _ORT_TYPES[spec.dtype])

    @property
    def model(self) -> Model:
        """The underlying :class:`Model`."""
        return self._model

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return ["SparsertCPUExecutionProvider"]

    def get_modelmeta(self) -> Any:
        meta = self._model.metadata

        class _Meta:
            producer_name = meta.get("sparsert.producer", "")
            graph_name = meta.get("model.name", "")
            custom_metadata_map = meta
            version = 0

        return _Meta()

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, ArrayLike],
            run_options: Any = None) -> list[np.ndarray]:
        """onnxruntime's ``run``: outputs by name (None = all, in model order) for a dict of inputs."""
        if not isinstance(input_feed, Mapping):
            raise TypeError("input_feed must be a dict of input name -> array")
        result = self._model.run(dict(input_feed), as_dict=True)
        if output_names is None:
            return [result[s.name] for s in self._model.outputs]
        unknown = [n for n in output_names if n not in result]
        if unknown:
            raise ValueError(f"unknown output name(s) {unknown}; the model has {list(result)}")
        return [result[n] for n in output_names]
