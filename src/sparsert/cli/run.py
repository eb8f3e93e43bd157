"""``sparsert run``: a .spr model on .npy / .npz inputs."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from sparsert._util import printable, shape_text
from sparsert.cli._common import UsageError, check_file, load_arrays, save_arrays, thread_count


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        parents=[common],
        help="run a .spr model on .npy/.npz inputs",
        description="Run a .spr model. A .npy input feeds a single-input model; a .npz holds the inputs by "
        "name. Arrays must have the inputs' dtypes (as in the Python API: no silent casts). Without --output a "
        "short summary of each output is printed.",
    )
    p.add_argument("model", help="the .spr model")
    p.add_argument("-i", "--input", required=True, help="input .npy (one input) or .npz (by input name)")
    p.add_argument("-o", "--output", help="write outputs to .npy (one output) or .npz (by output name)")
    p.add_argument("--threads", type=thread_count, help="kernel threads (default or 0: every core)")
    p.set_defaults(func=run)


def describe(name: str, a: np.ndarray) -> str:
    text = f"{printable(name)}: {a.dtype}[{shape_text(a.shape)}]"
    if a.size == 0:
        return text + " (empty)"
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        text += f" min {float(a.min()):.6g} max {float(a.max()):.6g} mean {float(a.mean()):.6g}"
        if not finite.all():
            text += f"  ({int((~finite).sum())} NaN/Inf)"
        if a.ndim >= 1 and a.shape[-1] > 1 and a.size // a.shape[-1] <= 8:
            top = np.argmax(a.reshape(-1, a.shape[-1]), axis=1)
            text += f"  argmax(last dim) {top.tolist()}"
    else:
        text += f" min {a.min()} max {a.max()}"
    return text


def run(args: argparse.Namespace) -> int:
    import sparsert

    check_file(args.model, ".spr file")
    if args.output and not args.output.lower().endswith((".npy", ".npz")):
        raise UsageError(f"--output {args.output!r}: use a .npy (one output) or .npz (outputs by name) file")
    model = sparsert.load(args.model, threads=args.threads)
    inputs = load_arrays(args.input, [s.name for s in model.inputs])
    start = time.perf_counter()
    outputs = model.run(inputs, as_dict=True)
    elapsed = (time.perf_counter() - start) * 1e3
    if args.output:
        save_arrays(args.output, outputs)
        print(f"wrote {args.output} ({', '.join(printable(n) for n in outputs)}) in {elapsed:.3f} ms")
        return 0
    print(f"ran {args.model} in {elapsed:.3f} ms ({model.threads} threads)")
    for name, value in outputs.items():
        print("  " + describe(name, value))
    return 0
