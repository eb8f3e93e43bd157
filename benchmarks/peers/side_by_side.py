"""DeepSparse vs sparsert vs onnxruntime on the same ONNX files, each library in its own process.

Run with the main Python (sparsert, numpy, onnx, onnxruntime importable); DeepSparse runs through
``benchmarks/peers/deepsparse_runner.py`` under ``--ds-python`` (a venv with deepsparse==1.8.0)::

    python -m benchmarks.peers.side_by_side --models ds-models --ds-python ds-venv/bin/python \\
        --threads 1 2 --rounds 2 --repeats 30 --json ds-results.jsonl

For every round, thread count and library it starts one process that times every file
(``--repeats`` timed runs after ``--warmup``, median and min reported), so thread pools of
different libraries never share the two cores. sparsert runs ``.spr`` files made by
``sparsert.convert(onnx, spr, input_shapes={input: (batch, ...)})`` (storage "auto": CSR for
weights with >= 50% zeros), loaded with ``sparsert.load(spr, threads=threads)``; onnxruntime runs
the ONNX file with ``intra_op_num_threads=threads``, sequential execution, all graph optimisations.
All three get the same input (``numpy.random.default_rng(seed).standard_normal``); the outputs of
sparsert and DeepSparse are checked against onnxruntime's (relative max error printed; over
``--tolerance`` fails the run). The table printed at the end (markdown) takes, per cell, the lowest
of the per-round medians.

``--library sparsert|onnxruntime FILES...`` is the worker mode the driver starts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "deepsparse_runner.py")
LIBRARIES = ("deepsparse", "sparsert", "onnxruntime")
PRETTY = {"resnet18": "ResNet-18", "mobilenet_v2": "MobileNetV2", "bert_encoder": "BERT-2",
          "resnet50": "ResNet-50", "squeezenet": "SqueezeNet 1.1", "densenet121": "DenseNet-121",
          "inception": "Inception-style", "efficientnet_b0": "EfficientNet-B0", "vit_s16": "ViT-S/16"}


# ---------------------------------------------------------------------------
# Worker mode (one library, one process)


def _onnx_input(path: str, batch: int) -> tuple[str, tuple[int, ...]]:
    import onnx

    model = onnx.load(path, load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"{path}: expected one graph input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [batch] + [int(d.dim_value) for d in dims[1:]]
    if any(d <= 0 for d in shape):
        raise ValueError(f"{path}: input {inputs[0].name!r} has symbolic dims beyond the batch: {dims}")
    return inputs[0].name, tuple(shape)


def _time(fn: Callable[[np.ndarray], Any], x: np.ndarray, repeats: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def _make_runner(
    library: str, path: str, name: str, shape: tuple[int, ...], threads: int, spr_dir: str
) -> Any:
    if library == "sparsert":
        import sparsert

        os.makedirs(spr_dir, exist_ok=True)
        spr = os.path.join(spr_dir, os.path.splitext(os.path.basename(path))[0] + f"_b{shape[0]}.spr")
        if not os.path.exists(spr) or os.path.getmtime(spr) < os.path.getmtime(path):
            sparsert.convert(path, spr, input_shapes={name: shape})
        model = sparsert.load(spr, threads=threads)
        return lambda x: model.run(x)
    if library == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {name: x})[0]
    raise ValueError(f"unknown worker library {library!r}; choose sparsert or onnxruntime")


def worker(
    library: str,
    files: Sequence[str],
    threads: int,
    batch: int,
    repeats: int,
    warmup: int,
    seed: int,
    out_dir: str,
) -> None:
    version = __import__(library).__version__
    for path in files:
        model = os.path.splitext(os.path.basename(path))[0]
        name, shape = _onnx_input(path, batch)
        x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        run = _make_runner(library, path, name, shape, threads, os.path.join(out_dir, "spr"))
        np.save(os.path.join(out_dir, f"{model}.t{threads}.{library}.npy"), np.asarray(run(x)))
        median, best = _time(run, x, repeats, warmup)
        row = {
            "library": library,
            "version": version,
            "model": model,
            "file": os.path.abspath(path),
            "threads": threads,
            "batch": batch,
            "repeats": repeats,
            "median_ms": round(median, 4),
            "min_ms": round(best, 4),
        }
        print(json.dumps(row), flush=True)


# ---------------------------------------------------------------------------
# Driver


def _run_process(cmd: list[str], env: dict[str, str]) -> list[dict[str, Any]]:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _check_outputs(out_dir: str, rows: list[dict[str, Any]], tolerance: float) -> None:
    for row in rows:
        if row["library"] == "onnxruntime":
            continue
        t, model, lib = row["threads"], row["model"], row["library"]
        ref = np.load(os.path.join(out_dir, f"{model}.t{t}.onnxruntime.npy"))
        got = np.load(os.path.join(out_dir, f"{model}.t{t}.{lib}.npy"))
        if got.shape != ref.shape:
            raise RuntimeError(f"{lib} {model}: output shape {got.shape} != onnxruntime's {ref.shape}")
        err = float(np.max(np.abs(got - ref)) / max(1e-6, float(np.max(np.abs(ref)))))
        row["rel_err_vs_ort"] = err
        print(f"  {lib:11s} {model:18s} t={t}: max|y - y_ort| / max|y_ort| = {err:.1e}", file=sys.stderr)
        if not err <= tolerance:
            raise RuntimeError(f"{lib} {model} threads={t}: relative error {err:.3g} > {tolerance}")


def _cell(v: float | None) -> str:
    return f"{v:.2f}" if v else "–"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "–"


def _variant(model: str) -> tuple[str, int, str]:
    """``resnet18_s90b4`` -> ("resnet18", 90, "b4"): base, sparsity %, block tag ("" = unstructured)."""
    base, tag = model.rsplit("_s", 1)
    pct, _, block = tag.partition("b")
    return base, int(pct), ("b" + block) if block else ""


def table(rows: list[dict[str, Any]]) -> str:
    best: dict[tuple[str, str, int], float] = {}
    for r in rows:
        key = (r["library"], r["model"], r["threads"])
        best[key] = min(best.get(key, float("inf")), r["median_ms"])
    models = sorted({r["model"] for r in rows}, key=lambda m: (_variant(m)[0], _variant(m)[2], _variant(m)[1]))
    threads = sorted({r["threads"] for r in rows})
    lines = [
        "| model | variant | threads | DeepSparse ms | sparsert ms | onnxruntime ms "
        "| DeepSparse / sparsert | onnxruntime / sparsert | onnxruntime / DeepSparse |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in threads:
        for m in models:
            base, pct, block = _variant(m)
            ds, sp, ort = (best.get((lib, m, t)) for lib in LIBRARIES)
            variant = ("dense" if pct == 0 else f"{pct}% unstructured") if not block else f"{pct}% 4x1 blocks"
            lines.append(
                f"| {PRETTY.get(base, base)} | {variant} | {t} | {_cell(ds)} | {_cell(sp)} | {_cell(ort)} "
                f"| {_ratio(ds, sp)} | {_ratio(ort, sp)} | {_ratio(ort, ds)} |"
            )
    return "\n".join(lines)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """One row per model and thread count: onnxruntime dense, sparsert dense and 90% (with the
    ratio onnxruntime dense / sparsert), DeepSparse dense and 90% where measured. Cells are the
    lowest of the round medians, like :func:`table`."""
    best: dict[tuple[str, str, int], float] = {}
    for r in rows:
        key = (r["library"], r["model"], r["threads"])
        best[key] = min(best.get(key, float("inf")), r["median_ms"])
    bases = sorted({_variant(r["model"])[0] for r in rows}, key=lambda b: list(PRETTY).index(b)
                   if b in PRETTY else len(PRETTY))
    blocks = any(_variant(r["model"])[2] for r in rows)
    lines = [
        "| model | threads | onnxruntime dense | sparsert dense | sparsert 90% | DeepSparse dense "
        "| DeepSparse 90% "
        "| dense: onnxruntime / sparsert | 90%: onnxruntime dense / sparsert | 90%: DeepSparse / sparsert |"
        + (" sparsert 90% 4x1 | DeepSparse 90% 4x1 | 90% 4x1: onnxruntime dense / sparsert "
           "| 90% 4x1: DeepSparse / sparsert |" if blocks else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if blocks else ""),
    ]
    for t in sorted({r["threads"] for r in rows}):
        for b in bases:
            ort = best.get(("onnxruntime", f"{b}_s0", t))
            sd, s9 = best.get(("sparsert", f"{b}_s0", t)), best.get(("sparsert", f"{b}_s90", t))
            dd, d9 = best.get(("deepsparse", f"{b}_s0", t)), best.get(("deepsparse", f"{b}_s90", t))
            line = (f"| {PRETTY.get(b, b)} | {t} | {_cell(ort)} | {_cell(sd)} | {_cell(s9)} "
                    f"| {_cell(dd)} "
                    f"| {_cell(d9)} | {_ratio(ort, sd)} | {_ratio(ort, s9)} | {_ratio(d9, s9)} |")
            if blocks:
                sb, db = best.get(("sparsert", f"{b}_s90b4", t)), best.get(("deepsparse", f"{b}_s90b4", t))
                line += f" {_cell(sb)} | {_cell(db)} | {_ratio(ort, sb)} | {_ratio(db, sb)} |"
            lines.append(line)
    return "\n".join(lines)


def drive(args: argparse.Namespace) -> int:
    files = (
        sorted(os.path.join(args.models, f) for f in os.listdir(args.models) if f.endswith(".onnx"))
        if os.path.isdir(args.models)
        else [args.models]
    )
    if not files:
        raise SystemExit(f"no .onnx files in {args.models}")
    os.makedirs(args.out, exist_ok=True)
    common = [
        "--batch",
        str(args.batch),
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--seed",
        str(args.seed),
    ]
    rows: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        for t in args.threads:
            env = dict(
                os.environ, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t), NM_DISABLE_ANALYTICS="1"
            )
            round_rows = []
            for lib in args.libraries:
                print(f"round {rnd + 1}/{args.rounds}, threads {t}: {lib}", file=sys.stderr, flush=True)
                if lib == "deepsparse":
                    ds_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
                    got = _run_process(
                        [
                            args.ds_python,
                            RUNNER,
                            "--threads",
                            str(t),
                            "--save-outputs",
                            args.out,
                            *common,
                            *files,
                        ],
                        ds_env,
                    )
                    for r in got:  # the runner names its output <model>.deepsparse.npy
                        os.replace(
                            os.path.join(args.out, f"{r['model']}.deepsparse.npy"),
                            os.path.join(args.out, f"{r['model']}.t{t}.deepsparse.npy"),
                        )
                else:
                    got = _run_process(
                        [
                            sys.executable,
                            "-m",
                            "benchmarks.peers.side_by_side",
                            "--library",
                            lib,
                            "--threads",
                            str(t),
                            "--out",
                            args.out,
                            *common,
                            *files,
                        ],
                        env,
                    )
                for r in got:
                    r["round"] = rnd + 1
                    print(
                        f"  {lib:11s} {r['model']:18s} t={t}: median {r['median_ms']:.2f} ms, "
                        f"min {r['min_ms']:.2f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
                round_rows += got
            if "onnxruntime" in args.libraries:
                _check_outputs(args.out, round_rows, args.tolerance)
            rows += round_rows
    if args.json:
        with open(args.json, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    print(table(rows))
    print()
    print(summary_table(rows))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="DeepSparse vs sparsert vs onnxruntime, one process per library."
    )
    ap.add_argument("files", nargs="*", help="(worker mode) ONNX files")
    ap.add_argument("--library", choices=("sparsert", "onnxruntime"), help="worker mode: time this library")
    ap.add_argument("--models", help="(driver) folder of ONNX files from export_onnx.py, or one file")
    ap.add_argument("--ds-python", default="ds-venv/bin/python", help="python of the DeepSparse venv")
    ap.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max relative output error vs onnxruntime")
    ap.add_argument("--out", default="side-by-side-out", help="folder for .spr files and outputs")
    ap.add_argument("--json", help="write every row (all rounds) as JSON lines here")
    ap.add_argument("--from-json", help="print the tables of a saved --json file and exit (no runs)")
    args = ap.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            saved = [json.loads(line) for line in f if line.strip()]
        print(table(saved))
        print()
        print(summary_table(saved))
        return 0
    if min(args.threads) < 1 or args.batch < 1 or args.repeats < 1 or args.rounds < 1:
        ap.error("--threads, --batch, --repeats and --rounds must be >= 1")
    if args.library:
        if len(args.threads) != 1:
            ap.error("worker mode takes one --threads value")
        if not args.files:
            ap.error("worker mode needs ONNX files")
        os.makedirs(args.out, exist_ok=True)
        worker(
            args.library,
            args.files,
            args.threads[0],
            args.batch,
            args.repeats,
            args.warmup,
            args.seed,
            args.out,
        )
        return 0
    if not args.models:
        ap.error("give --models (driver) or --library (worker)")
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
