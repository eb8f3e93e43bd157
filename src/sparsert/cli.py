"""The ``sparsert`` command: convert, inspect, run, bench and demo.

    sparsert convert model.onnx -o model.spr --input-shape x=1,3,224,224 --prune magnitude:0.9
    sparsert inspect model.spr [--json]
    sparsert run model.spr --input x.npy [--output y.npy]
    sparsert bench model.spr --vs model.onnx --threads 2
    sparsert demo --quick --out demo-results

Errors are one line on stderr: exit status 2 for a bad command line, 1 when the work fails
(missing file, broken model, unsupported op...). ``--verbose`` adds the traceback.
The command only calls the public Python API (``sparsert.load``, ``sparsert.convert``, ...).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

__all__ = ["main", "build_parser", "UsageError"]

PROG = "sparsert"


class UsageError(Exception):
    """A command line that parses but makes no sense (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``prog: error: ... (see prog --help)``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------- argument types


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    from sparsert.onnx import parse_input_shape

    try:
        return parse_input_shape(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _prune_spec(text: str) -> dict[str, Any]:
    from sparsert.onnx import parse_prune_spec

    try:
        return parse_prune_spec(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    # --verbose is accepted before and after the subcommand; SUPPRESS keeps the subparser from
    # resetting a value the main parser already set.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback on errors",
    )

    from sparsert import __version__

    parser = _Parser(
        prog=PROG,
        description="sparsert: run pruned neural networks fast on CPUs (.spr models).",
        epilog="Run 'sparsert COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"sparsert {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=False, help="show the full traceback on errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "convert",
        parents=[common],
        help="convert an ONNX model to .spr",
        description="Convert an ONNX model to a .spr file (see docs/onnx.md).",
    )
    p.add_argument("onnx", help="the .onnx model")
    p.add_argument("-o", "--output", required=True, help="the .spr file to write")
    p.add_argument(
        "--input-shape",
        action="append",
        type=_input_shape,
        default=[],
        metavar="NAME=D0,D1,...",
        help="freeze the shape of an input with symbolic dims, e.g. x=1,3,224,224 (repeatable)",
    )
    p.add_argument(
        "--prune",
        type=_prune_spec,
        metavar="METHOD:SPARSITY",
        help="magnitude-prune Linear/Conv2d weights, e.g. magnitude:0.9 (no fine-tuning)",
    )
    p.add_argument(
        "--storage",
        choices=("auto", "dense", "csr"),
        default="auto",
        help="weight storage: auto = CSR when >= 50%% zeros (default), dense, or csr",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="run the result against the ONNX reference implementation (slow on big models)",
    )
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "inspect",
        parents=[common],
        help="show a .spr model layer by layer",
        description="Print metadata, inputs/outputs and every node of a .spr model: op, "
        "output shapes, weight storage, sparsity, nnz, bytes, FLOPs and the kernel the "
        "runtime picks on this machine.",
    )
    p.add_argument("model", help="the .spr model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--input-shape",
        action="append",
        type=_input_shape,
        default=[],
        metavar="NAME=D0,D1,...",
        help="shape for FLOPs and output shapes (default: declared shapes, any dim read as 1)",
    )
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "run",
        parents=[common],
        help="run a .spr model on .npy/.npz inputs",
        description="Run a .spr model. A .npy input feeds a single-input model; a .npz "
        "holds the inputs by name. Without --output a short summary of each output is "
        "printed.",
    )
    p.add_argument("model", help="the .spr model")
    p.add_argument("-i", "--input", required=True, help="input .npy (one input) or .npz (by input name)")
    p.add_argument("-o", "--output", help="write outputs to .npy (one output) or .npz (by output name)")
    p.add_argument("--threads", type=_positive_int, help="kernel threads (default: one per core)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "bench",
        parents=[common],
        help="time a .spr model (optionally against onnxruntime)",
        description="Time a .spr model on random inputs: median/min/max latency, the "
        "per-layer breakdown, and onnxruntime on an ONNX file side by side with --vs.",
    )
    p.add_argument("model", help="the .spr model")
    p.add_argument("--vs", metavar="MODEL.onnx", help="also time this ONNX model with onnxruntime")
    p.add_argument("--threads", type=_positive_int, help="threads for both runtimes (default: one per core)")
    p.add_argument(
        "--batch", type=_positive_int, help="batch size for inputs whose first dim is free (default 1)"
    )
    p.add_argument("--repeats", type=_positive_int, default=50, help="timed runs (default 50)")
    p.add_argument("--warmup", type=_non_negative_int, default=5, help="untimed runs first (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="prune, export and benchmark small CNNs end to end",
        description="Train a small CNN on scikit-learn's digits, prune it (90%% unstructured, "
        "50%% filters), export to .spr, and compare accuracy, size and latency with PyTorch "
        "and onnxruntime; then a ResNet-18 at 224x224 dense vs 90%% sparse. Needs the 'demo' "
        "extra; nothing is downloaded.",
    )
    p.add_argument(
        "--quick", action="store_true", help="fewer epochs and a smaller ResNet at 112x112 (< 30 s)"
    )
    p.add_argument("--out", metavar="DIR", help="write the .spr files, results.json and results.png here")
    p.add_argument("--threads", type=_positive_int, help="threads for every runtime (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="seed for data split, init and training (default 0)")
    p.set_defaults(func=cmd_demo)
    return parser


# --------------------------------------------------------------------------- helpers


def _check_file(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such {what}: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"expected a {what}, got a directory: {path!r}")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join("?" if d < 0 else str(d) for d in shape)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *cells)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ).rstrip()

    return "\n".join([line(list(head)), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _shape_map(pairs: Sequence[tuple[str, tuple[int, ...]]], what: str) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in pairs:
        if name in out:
            raise UsageError(f"{what} {name!r} is given twice")
        out[name] = shape
    return out


def _model_shapes(
    model: Any, given: dict[str, tuple[int, ...]], batch: int | None = None
) -> list[tuple[int, ...]]:
    """Concrete input shapes: ``given`` by name, else the declared shape with free dims = ``batch`` or 1."""
    names = [s.name for s in model.inputs]
    unknown = [n for n in given if n not in names]
    if unknown:
        raise UsageError(f"the model has no input(s) {unknown}; its inputs are {names}")
    shapes = []
    for spec in model.inputs:
        if spec.name in given:
            shape = given[spec.name]
            if len(shape) != len(spec.shape) or any(w >= 0 and w != g for w, g in zip(spec.shape, shape)):
                raise UsageError(f"input {spec.name!r}: shape {shape} does not fit the declared {spec}")
            shapes.append(tuple(shape))
            continue
        dims = []
        for k, d in enumerate(spec.shape):
            if d >= 0:
                dims.append(d)
            else:
                dims.append(batch if (batch is not None and k == 0) else 1)
        if batch is not None and spec.shape and spec.shape[0] >= 0 and spec.shape[0] != batch:
            raise UsageError(
                f"input {spec.name!r} has a fixed batch of {spec.shape[0]} ({spec}); --batch {batch} needs a "
                f"model with a free batch dim (for ONNX: convert again with --input-shape "
                f"{spec.name}={','.join(str(x) for x in [batch, *spec.shape[1:]])})"
            )
        shapes.append(tuple(dims))
    return shapes


# --------------------------------------------------------------------------- convert


def cmd_convert(args: argparse.Namespace) -> int:
    import sparsert

    _check_file(args.onnx, "ONNX file")
    shapes = _shape_map(args.input_shape, "--input-shape")
    start = time.perf_counter()
    dst = sparsert.convert(
        args.onnx,
        args.output,
        input_shapes=shapes or None,
        prune=args.prune,
        storage=args.storage,
        verify=args.verify,
    )
    elapsed = time.perf_counter() - start
    from sparsert import format as spr

    model_file = spr.read(dst, verify=False)
    weights = {n.inputs[1] for n in model_file.nodes if n.op_type in _LAYER_OPS and len(n.inputs) > 1}
    csr = sum(1 for t in model_file.tensors if t.name in weights and t.storage == "csr")
    print(
        f"wrote {dst}: {len(model_file.nodes)} nodes, {len(weights)} layer weights ({csr} CSR, "
        f"{len(weights) - csr} dense), {_fmt_bytes(os.path.getsize(dst))} in {elapsed:.2f} s"
        + (" (verified against onnx.reference)" if args.verify else "")
    )
    print(f"next: sparsert inspect {dst}")
    return 0


# --------------------------------------------------------------------------- inspect

_LAYER_OPS = ("Linear", "Conv", "ConvTranspose")


def _fx_name(module_name: str) -> str:
    name = module_name.replace(".", "_")
    return "_" + name if name[:1].isdigit() else name


def _shrunk_layers(metadata: dict[str, Any]) -> dict[str, str]:
    """Layers whose output channels were physically removed, from the exporter's metadata.

    ``export.shrunk``: ``"conv1 16->8, layer1.0.conv1 64->32"`` (module names, as in
    ExportResult.summary). Keys are returned as torch.fx names the nodes (``.`` -> ``_``, a leading
    digit gets a ``_``), which is how the exporter names them."""
    text = metadata.get("export.shrunk")
    out: dict[str, str] = {}
    if not isinstance(text, str):
        return out
    for item in text.split(","):
        parts = item.strip().split()
        if len(parts) == 2 and "->" in parts[1]:
            out[_fx_name(parts[0])] = parts[1]
    return out


def _inspect_data(path: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    import sparsert
    from sparsert import format as spr

    model = sparsert.load(path)
    model_file = spr.read(path, verify=False)
    input_shapes = _model_shapes(model, shapes)
    summary = model.summary(input_shapes)
    shrunk = _shrunk_layers(model_file.metadata)
    nodes = []
    for row in summary:
        entry = {
            k: row[k]
            for k in (
                "name",
                "op",
                "input_shapes",
                "output_shapes",
                "weight_storage",
                "weight_shape",
                "weight_elements",
                "weight_nnz",
                "weight_bytes",
                "flops",
                "dense_flops",
                "kernel",
            )
        }
        entry["input_shapes"] = [list(s) for s in entry["input_shapes"]]
        entry["output_shapes"] = [list(s) for s in entry["output_shapes"]]
        entry["weight_shape"] = list(entry["weight_shape"])
        elements = row["weight_elements"]
        entry["sparsity"] = 1.0 - row["weight_nnz"] / elements if elements else None
        entry["shrunk"] = shrunk.get(_fx_name(row["name"]))
        nodes.append(entry)
    totals = summary.totals()
    totals.pop("time_ms", None)
    elements = totals["weight_elements"]
    totals["sparsity"] = 1.0 - totals["weight_nnz"] / elements if elements else None
    totals["nodes"] = len(nodes)
    totals["file_bytes"] = os.path.getsize(path)
    return {
        "file": path,
        "cpu": sparsert.cpu_features(),
        "threads": model.threads,
        "metadata": {k: _jsonable(v) for k, v in model_file.metadata.items()},
        "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in model.inputs],
        "outputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in model.outputs],
        "shapes_used": [list(s) for s in input_shapes],
        "nodes": nodes,
        "totals": totals,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def cmd_inspect(args: argparse.Namespace) -> int:
    _check_file(args.model, ".spr file")
    data = _inspect_data(args.model, _shape_map(args.input_shape, "--input-shape"))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(
        f"{data['file']}  ({_fmt_bytes(data['totals']['file_bytes'])}, kernels for {data['cpu']}, "
        f"{data['threads']} threads)"
    )
    if data["metadata"]:
        print("metadata:")
        width = max(len(k) for k in data["metadata"])
        for key, value in data["metadata"].items():
            print(f"  {key.ljust(width)}  {value}")
    print(
        "inputs:  "
        + ", ".join(f"{s['name']}: {s['dtype']}[{_shape_text(s['shape'])}]" for s in data["inputs"])
    )
    print(
        "outputs: "
        + ", ".join(f"{s['name']}: {s['dtype']}[{_shape_text(s['shape'])}]" for s in data["outputs"])
    )
    print("shapes used: " + ", ".join(_shape_text(s) for s in data["shapes_used"]))
    head = ["node", "op", "output", "storage", "sparsity", "nnz", "bytes", "MFLOP", "dense MFLOP", "kernel"]
    rows = []
    for n in data["nodes"]:
        has_weight = n["weight_elements"] > 0
        storage = n["weight_storage"] or ""
        if n["shrunk"]:
            storage = f"{storage} shrunk {n['shrunk']}".strip()
        rows.append(
            [
                n["name"],
                n["op"],
                " ".join(_shape_text(s) for s in n["output_shapes"]),
                storage,
                f"{n['sparsity']:.1%}" if has_weight else "",
                n["weight_nnz"] if has_weight else "",
                _fmt_bytes(n["weight_bytes"]) if has_weight else "",
                f"{n['flops'] / 1e6:.3f}" if n["flops"] else "",
                f"{n['dense_flops'] / 1e6:.3f}" if n["dense_flops"] else "",
                n["kernel"],
            ]
        )
    t = data["totals"]
    rows.append(
        [
            "total",
            f"{t['nodes']} nodes",
            "",
            "",
            f"{t['sparsity']:.1%}" if t["sparsity"] is not None else "",
            t["weight_nnz"],
            _fmt_bytes(t["weight_bytes"]),
            f"{t['flops'] / 1e6:.3f}",
            f"{t['dense_flops'] / 1e6:.3f}",
            "",
        ]
    )
    print()
    print(_table(head, rows, right=(4, 5, 6, 7, 8)))
    return 0


# --------------------------------------------------------------------------- run


def _load_inputs(path: str, model: Any) -> dict[str, np.ndarray]:
    _check_file(path, "input file")
    names = [s.name for s in model.inputs]
    if not path.lower().endswith(".npz") and len(names) != 1:
        raise UsageError(f"the model takes {len(names)} inputs {names}; give them by name in one .npz file")
    try:
        if path.lower().endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
            if len(names) == 1 and list(arrays) == ["arr_0"]:  # np.savez(f, x) without a name
                arrays = {names[0]: arrays["arr_0"]}
        else:
            array = np.load(path, allow_pickle=False)
            if not isinstance(array, np.ndarray):
                raise ValueError("it holds several arrays; name the file .npz")
            arrays = {names[0]: array}
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"cannot read {path!r} as .npy/.npz: {e or type(e).__name__}") from None
    missing = [n for n in names if n not in arrays]
    unknown = [n for n in arrays if n not in names]
    if missing or unknown:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else [])
        raise ValueError(f"{path!r}: {'; '.join(parts)}; the model takes inputs {names}")
    out = {}
    for name in names:
        a = arrays[name]
        if a.dtype.kind not in "fiub":
            raise ValueError(f"input {name!r} in {path!r} has dtype {a.dtype}; expected numbers (float32)")
        out[name] = a.astype(np.float32, copy=False)
    return out


def _describe(name: str, a: np.ndarray) -> str:
    text = f"{name}: float32[{_shape_text(a.shape)}]"
    if a.size == 0:
        return text + " (empty)"
    finite = np.isfinite(a)
    text += f" min {float(a.min()):.6g} max {float(a.max()):.6g} mean {float(a.mean()):.6g}"
    if not finite.all():
        text += f"  ({int((~finite).sum())} NaN/Inf)"
    if a.ndim >= 1 and a.shape[-1] > 1 and a.size // a.shape[-1] <= 8:
        top = np.argmax(a.reshape(-1, a.shape[-1]), axis=1)
        text += f"  argmax(last dim) {top.tolist()}"
    return text


def cmd_run(args: argparse.Namespace) -> int:
    import sparsert

    _check_file(args.model, ".spr file")
    if args.output and not args.output.lower().endswith((".npy", ".npz")):
        raise UsageError(f"--output {args.output!r}: use a .npy (one output) or .npz (outputs by name) file")
    model = sparsert.load(args.model, threads=args.threads)
    inputs = _load_inputs(args.input, model)
    start = time.perf_counter()
    outputs = model.run(inputs, as_dict=True)
    elapsed = (time.perf_counter() - start) * 1e3
    if args.output:
        if args.output.lower().endswith(".npy"):
            if len(outputs) != 1:
                raise UsageError(
                    f"the model has {len(outputs)} outputs {list(outputs)}; write them to a .npz file"
                )
            np.save(args.output, next(iter(outputs.values())))
        else:
            np.savez(args.output, **outputs)
        print(f"wrote {args.output} ({', '.join(outputs)}) in {elapsed:.3f} ms")
        return 0
    print(f"ran {args.model} in {elapsed:.3f} ms ({model.threads} threads)")
    for name, value in outputs.items():
        print("  " + _describe(name, value))
    return 0


# --------------------------------------------------------------------------- bench


def _time_calls(fn: Any, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _stats(times: Sequence[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def _onnxruntime_session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def _ort_feed(session: Any, arrays: list[np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    ort_inputs = session.get_inputs()
    if len(ort_inputs) != len(arrays):
        raise ValueError(f"the ONNX model takes {len(ort_inputs)} input(s), the .spr model {len(arrays)}")
    ort_names = [i.name for i in ort_inputs]
    if sorted(ort_names) == sorted(names):  # same names: match by name, else by position
        by_name = dict(zip(names, arrays))
        return {n: by_name[n] for n in ort_names}
    return dict(zip(ort_names, arrays))


def cmd_bench(args: argparse.Namespace) -> int:
    import sparsert

    _check_file(args.model, ".spr file")
    if args.vs:
        _check_file(args.vs, "ONNX file")
    model = sparsert.load(args.model, threads=args.threads)
    threads = model.threads
    shapes = _model_shapes(model, {}, batch=args.batch)
    rng = np.random.default_rng(args.seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    names = [s.name for s in model.inputs]

    times = _time_calls(lambda: model.run(arrays), args.warmup, args.repeats)
    result: dict[str, Any] = {
        "model": args.model,
        "cpu": sparsert.cpu_features(),
        "threads": threads,
        "input_shapes": [list(s) for s in shapes],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "sparsert": _stats(times),
    }
    model.profile(arrays, repeats=min(args.repeats, 20))
    summary = model.summary()
    result["layers"] = [
        {
            "name": r["name"],
            "op": r["op"],
            "storage": r["weight_storage"],
            "kernel": r["kernel"],
            "flops": r["flops"],
            "time_ms": r["time_ms"],
        }
        for r in summary
    ]
    ort_note = None
    if args.vs:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            ort_note = "onnxruntime is not installed (pip install onnxruntime): skipping --vs"
        if ort_note is None:
            session = _onnxruntime_session(args.vs, threads)
            feed = _ort_feed(session, arrays, names)
            ort_times = _time_calls(lambda: session.run(None, feed), args.warmup, args.repeats)
            result["onnxruntime"] = _stats(ort_times)
            result["onnxruntime"]["file"] = args.vs
            result["speedup_vs_onnxruntime"] = (
                result["onnxruntime"]["median_ms"] / result["sparsert"]["median_ms"]
            )
            ours = model.run(arrays)
            ours = [ours] if isinstance(ours, np.ndarray) else list(ours)
            theirs = session.run(None, feed)
            diffs = []
            for a, b in zip(ours, theirs):
                b = np.asarray(b, dtype=np.float32)
                if a.shape != b.shape:
                    diffs.append(math.inf)
                else:
                    scale = float(np.max(np.abs(b))) if b.size else 0.0
                    err = float(np.max(np.abs(a - b))) if b.size else 0.0
                    diffs.append(err / scale if scale > 0 else err)
            result["max_rel_diff_vs_onnxruntime"] = max(diffs) if diffs else 0.0

    if args.json:
        if ort_note:
            result["note"] = ort_note
        print(json.dumps(result, indent=2))
        return 0

    s = result["sparsert"]
    print(
        f"{args.model}: inputs {', '.join(_shape_text(x) for x in shapes)}, {threads} threads, "
        f"{sparsert.cpu_features()}; {args.warmup} warm-up + {args.repeats} timed runs"
    )
    print()
    print(summary.table())
    print()
    head = ["runtime", "median ms", "min ms", "max ms"] + (["speedup"] if "onnxruntime" in result else [])
    rows = [
        ["sparsert", f"{s['median_ms']:.3f}", f"{s['min_ms']:.3f}", f"{s['max_ms']:.3f}"]
        + (["1.00x"] if "onnxruntime" in result else [])
    ]
    if "onnxruntime" in result:
        o = result["onnxruntime"]
        rows.append(
            [
                "onnxruntime",
                f"{o['median_ms']:.3f}",
                f"{o['min_ms']:.3f}",
                f"{o['max_ms']:.3f}",
                f"{o['median_ms'] / s['median_ms']:.2f}x slower"
                if o["median_ms"] >= s["median_ms"]
                else f"{s['median_ms'] / o['median_ms']:.2f}x faster",
            ]
        )
    print(_table(head, rows, right=(1, 2, 3)))
    if "onnxruntime" in result:
        print(
            f"sparsert is {result['speedup_vs_onnxruntime']:.2f}x onnxruntime's speed "
            f"(outputs differ by max rel {result['max_rel_diff_vs_onnxruntime']:.2g}; "
            "a pruned .spr against its dense ONNX differs by design)"
        )
    if ort_note:
        print(ort_note)
    return 0


# --------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from sparsert.demo import run_demo

    run_demo(quick=args.quick, out=args.out, threads=args.threads, seed=args.seed)
    return 0


# --------------------------------------------------------------------------- main


def _one_line(e: BaseException) -> str:
    """The error as one line; the exception type is named unless it adds nothing."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.strerror}: {e.filename!r}"
    text = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip()) or repr(e)
    if type(e) in (ValueError, RuntimeError, OSError, FileNotFoundError, IsADirectoryError, UsageError):
        return text
    return f"{type(e).__name__}: {text}"


def _show_warning_line(command: str) -> Any:
    """A ``warnings.showwarning`` that prints one line: ``sparsert convert: warning: ...``."""

    def show(
        message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        text = " ".join(str(message).split())
        print(f"{PROG} {command}: warning: {text}", file=file or sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    saved_showwarning = warnings.showwarning
    if not verbose:
        warnings.showwarning = _show_warning_line(args.command)
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        if verbose:
            traceback.print_exc()
        sub = f"{PROG} {args.command}"
        print(f"{sub}: error: {_one_line(e)} (see '{sub} --help')", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001 - every failure becomes one line (traceback with --verbose)
        if verbose:
            traceback.print_exc()
        print(f"{PROG} {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = saved_showwarning


if __name__ == "__main__":
    sys.exit(main())
