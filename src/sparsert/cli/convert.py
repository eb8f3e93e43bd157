"""``sparsert convert``: an ONNX model to a .spr file."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from sparsert._util import format_bytes
from sparsert.cli._common import check_file, input_shape, shape_map


def _prune_spec(text: str) -> dict[str, Any]:
    from sparsert.onnx import parse_prune_spec

    try:
        return parse_prune_spec(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "convert",
        parents=[common],
        help="convert an ONNX model to .spr",
        description="Convert an ONNX model to a .spr file (see docs/onnx.md). Dims the model leaves "
        "symbolic (batch, sequence length) stay free unless --input-shape fixes them.",
    )
    p.add_argument("onnx", help="the .onnx model")
    p.add_argument("-o", "--output", required=True, help="the .spr file to write")
    p.add_argument(
        "--input-shape", action="append", type=input_shape, default=[], metavar="NAME=D0,D1,...",
        help="fix the shape of an input, e.g. x=1,3,224,224 (repeatable); everything that depends only on "
        "shapes is then folded",
    )
    p.add_argument(
        "--prune", type=_prune_spec, metavar="METHOD:SPARSITY[:OPTIONS]",
        help="magnitude-prune Linear/Conv weights without fine-tuning, e.g. magnitude:0.9 or "
        "magnitude:0.9:block=4x1",
    )
    p.add_argument(
        "--storage", choices=("auto", "dense", "csr", "bsr"), default="auto",
        help="layer weight storage: auto = sparse when >= 50%% zeros (default), dense, csr or bsr",
    )
    p.add_argument("--block", metavar="RxC", help="BSR block for --storage auto/bsr, e.g. 4x1")
    p.add_argument("--verify", action="store_true",
                   help="run the result against the ONNX reference implementation (slow on big models)")
    p.set_defaults(func=run)


def _block(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    from sparsert.onnx import parse_block

    return parse_block(text)


def run(args: argparse.Namespace) -> int:
    import sparsert
    from sparsert import format as spr
    from sparsert.ir import LAYER_OPS

    check_file(args.onnx, "ONNX file")
    shapes = shape_map(args.input_shape, "--input-shape")
    start = time.perf_counter()
    dst = sparsert.convert(args.onnx, args.output, input_shapes=shapes or None, prune=args.prune,
                           storage=args.storage, block=_block(args.block), verify=args.verify)
    elapsed = time.perf_counter() - start
    model_file = spr.read(dst, verify=False)
    weights = {n.inputs[1] for n in model_file.nodes if n.op_type in LAYER_OPS and len(n.inputs) > 1}
    sparse = sum(1 for t in model_file.tensors if t.name in weights and t.storage != "dense")
    dynamic = [f"{i.name}[{', '.join(n or '?' for n, d in zip(i.dim_names, i.shape) if d < 0)}]"
               for i in model_file.inputs if any(d < 0 for d in i.shape)]
    print(
        f"wrote {dst}: {len(model_file.nodes)} nodes, {len(weights)} layer weights ({sparse} sparse, "
        f"{len(weights) - sparse} dense), {format_bytes(os.path.getsize(dst))} in {elapsed:.2f} s"
        + (" (verified against onnx.reference)" if args.verify else "")
    )
    if dynamic:
        print("dynamic dims: " + ", ".join(dynamic))
    print(f"next: sparsert inspect {dst}")
    return 0
