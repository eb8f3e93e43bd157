"""Time ONNX models on DeepSparse; one JSON line per model on stdout.

Standalone: run it with the Python of a virtual environment that has ``deepsparse==1.8.0``
(which pins numpy 1.26 and onnx 1.14, hence the separate environment), not with the main one::

    python3 -m venv ds-venv && ds-venv/bin/pip install deepsparse==1.8.0
    NM_DISABLE_ANALYTICS=1 ds-venv/bin/python benchmarks/peers/deepsparse_runner.py \\
        --threads 1 --batch 1 --repeats 30 ds-models/*.onnx

Each file is compiled with ``deepsparse.compile_model(path, batch_size, num_cores=threads)``, run
``--warmup`` times, then timed ``--repeats`` times (one ``engine.run`` per timing, a fixed random
input from ``--seed``). Printed per file::

    {"library": "deepsparse", "version": "1.8.0", "model": "resnet18_s90", "file": "...",
     "threads": 1, "batch": 1, "repeats": 30, "median_ms": 14.3, "min_ms": 14.0}

``--save-outputs DIR`` also writes the input and DeepSparse's first output as
``DIR/<model>.in.npy`` and ``DIR/<model>.deepsparse.npy`` so another process can check them. The
ONNX files must have IR version <= 8 (``benchmarks/peers/export_onnx.py`` writes such files).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")  # before deepsparse is imported

import numpy as np  # noqa: E402


def input_shapes(path: str, batch: int) -> list[tuple[int, ...]]:
    """Shapes of the graph inputs (initialisers excluded), symbolic dims (batch) set to ``batch``."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    if model.ir_version > 8:
        raise ValueError(
            f"{path}: IR version {model.ir_version}; DeepSparse 1.8 (onnx 1.14) reads IR <= 8 -- "
            "write the file with benchmarks/peers/export_onnx.py"
        )
    inits = {t.name for t in model.graph.initializer}
    shapes = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise ValueError(f"{path}: input {value.name!r} is not float32; this runner feeds float32 only")
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise ValueError(f"{path}: input {value.name!r} has no shape")
        shape = []
        for i, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            elif i == 0:
                shape.append(batch)
            else:
                raise ValueError(f"{path}: input {value.name!r} dim {i} ({d.dim_param!r}) is symbolic")
        if shape[0] != batch:
            shape[0] = batch  # DeepSparse compiles for batch_size and overrides the first dim
        shapes.append(tuple(shape))
    if not shapes:
        raise ValueError(f"{path}: the graph has no inputs")
    return shapes


def time_file(
    path: str, threads: int, batch: int, repeats: int, warmup: int, seed: int, save_outputs: str | None
) -> dict[str, object]:
    import deepsparse

    name = os.path.splitext(os.path.basename(path))[0]
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in input_shapes(path, batch)]
    engine = deepsparse.compile_model(path, batch_size=batch, num_cores=threads)
    outputs = engine.run(inputs)
    for _ in range(max(0, warmup - 1)):
        engine.run(inputs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine.run(inputs)
        times.append((time.perf_counter() - t0) * 1e3)
    if save_outputs:
        os.makedirs(save_outputs, exist_ok=True)
        if len(inputs) == 1:
            np.save(os.path.join(save_outputs, f"{name}.in.npy"), inputs[0])
        np.save(os.path.join(save_outputs, f"{name}.deepsparse.npy"), np.asarray(outputs[0]))
    return {
        "library": "deepsparse",
        "version": deepsparse.__version__,
        "model": name,
        "file": os.path.abspath(path),
        "threads": threads,
        "batch": batch,
        "repeats": repeats,
        "median_ms": round(statistics.median(times), 4),
        "min_ms": round(min(times), 4),
        "engine_cores": int(getattr(engine, "num_cores", threads)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Time ONNX files on DeepSparse (JSON lines on stdout).")
    ap.add_argument("files", nargs="+", help="ONNX files (IR version <= 8)")
    ap.add_argument("--threads", type=int, default=1, help="DeepSparse num_cores (default 1)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30, help="timed runs per file (median reported)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random input")
    ap.add_argument("--save-outputs", metavar="DIR", help="write <model>.in.npy and <model>.deepsparse.npy")
    args = ap.parse_args(argv)
    for flag in ("threads", "batch", "repeats"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    missing = [f for f in args.files if not os.path.isfile(f)]
    if missing:
        ap.error(f"no such file(s): {', '.join(missing)}")
    try:
        import deepsparse  # noqa: F401
    except ImportError as e:
        print(
            f"error: deepsparse is not importable from {sys.executable} ({e}); run this script with the "
            "Python of a venv holding deepsparse==1.8.0",
            file=sys.stderr,
        )
        return 2
    for path in args.files:
        try:
            row = time_file(
                path, args.threads, args.batch, args.repeats, args.warmup, args.seed, args.save_outputs
            )
        except ValueError as e:  # a file this runner cannot feed: say which, go on with the rest
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
