"""``sparsert inspect``: a .spr model layer by layer (one read of the file: the loaded model)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np

from sparsert._util import format_bytes, printable, shape_text, table
from sparsert.cli._common import check_file, input_shape, model_shapes, shape_map


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "inspect",
        parents=[common],
        help="show a .spr model layer by layer",
        description="Print metadata, inputs/outputs and every node of a .spr model as it runs here (after "
        "the load-time fusions): op, output shapes, weight storage, sparsity, nnz, bytes, FLOPs and the kernel "
        "the runtime picks on this machine.",
    )
    p.add_argument("model", help="the .spr model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--input-shape", action="append", type=input_shape, default=[], metavar="NAME=D0,D1,...",
        help="shape for FLOPs and output shapes (default: declared shapes, any dim read as 1)",
    )
    p.set_defaults(func=run)


def _fx_name(module_name: str) -> str:
    name = module_name.replace(".", "_")
    return "_" + name if name[:1].isdigit() else name


def shrunk_layers(metadata: dict[str, Any]) -> dict[str, str]:
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


_KEYS = ("name", "op", "input_shapes", "output_shapes", "weight_storage", "weight_shape", "weight_elements",
         "weight_nnz", "weight_bytes", "flops", "dense_flops", "kernel")


def inspect_data(path: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    import sparsert

    model = sparsert.load(path)
    metadata = model.metadata
    input_shapes = model_shapes(model, shapes)
    summary = model.summary(input_shapes)
    shrunk = shrunk_layers(metadata)
    nodes = []
    for row in summary:
        entry = {k: row[k] for k in _KEYS}
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

    def spec(s: Any) -> dict[str, Any]:
        shape = None if s.shape is None else list(s.shape)  # None: known only at run time
        return {"name": s.name, "shape": shape, "dtype": s.dtype, "dim_names": list(s.dim_names)}

    return {
        "file": path,
        "cpu": sparsert.cpu_features(),
        "threads": model.threads,
        "metadata": {k: _jsonable(v) for k, v in metadata.items()},
        "inputs": [spec(s) for s in model.inputs],
        "outputs": [spec(s) for s in model.outputs],
        "shapes_used": [list(s) for s in input_shapes],
        "load_log": model.load_log,
        "nodes": nodes,
        "totals": totals,
    }


def _io(specs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{printable(s['name'])}: {s['dtype']}"
                     + (f"[{printable(shape_text(s['shape'], s['dim_names']))}]" if s["shape"] is not None
                        else " (shape known at run time)") for s in specs)


def run(args: argparse.Namespace) -> int:
    check_file(args.model, ".spr file")
    data = inspect_data(args.model, shape_map(args.input_shape, "--input-shape"))
    if args.json:
        print(json.dumps(data, indent=2))  # JSON escapes control characters itself
        return 0
    print(f"{printable(data['file'])}  ({format_bytes(data['totals']['file_bytes'])}, kernels for {data['cpu']}, "
          f"{data['threads']} threads)")
    if data["metadata"]:
        print("metadata:")
        width = max(len(printable(k)) for k in data["metadata"])
        for key, value in data["metadata"].items():
            print(f"  {printable(key).ljust(width)}  {printable(value)}")
    print("inputs:  " + _io(data["inputs"]))
    print("outputs: " + _io(data["outputs"]))
    print("shapes used: " + ", ".join(shape_text(s) for s in data["shapes_used"]))
    if data["load_log"]:
        print("at load: " + "; ".join(data["load_log"]))
    head = ["node", "op", "output", "storage", "sparsity", "nnz", "bytes", "MFLOP", "dense MFLOP", "kernel"]
    rows = []
    for n in data["nodes"]:
        has_weight = n["weight_elements"] > 0
        storage = n["weight_storage"] or ""
        if n["shrunk"]:
            storage = f"{storage} shrunk {n['shrunk']}".strip()
        rows.append([
            n["name"], n["op"], " ".join(shape_text(s) for s in n["output_shapes"]), storage,
            f"{n['sparsity']:.1%}" if has_weight else "", n["weight_nnz"] if has_weight else "",
            format_bytes(n["weight_bytes"]) if has_weight else "",
            f"{n['flops'] / 1e6:.3f}" if n["flops"] else "",
            f"{n['dense_flops'] / 1e6:.3f}" if n["dense_flops"] else "", n["kernel"],
        ])
    t = data["totals"]
    rows.append([
        "total", f"{t['nodes']} nodes", "", "", f"{t['sparsity']:.1%}" if t["sparsity"] is not None else "",
        t["weight_nnz"], format_bytes(t["weight_bytes"]), f"{t['flops'] / 1e6:.3f}",
        f"{t['dense_flops'] / 1e6:.3f}", "",
    ])
    print()
    print(table(head, rows, right=(4, 5, 6, 7, 8)))
    return 0
