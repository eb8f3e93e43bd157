"""``sparsert bench``: time a .spr model, optionally side by side with onnxruntime."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

from sparsert._util import NOISY_SPREAD, shape_text, table, time_calls, timing_stats
from sparsert.cli._common import (
    check_file,
    model_shapes,
    non_negative_int,
    positive_int,
    random_inputs,
    thread_count,
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "bench",
        parents=[common],
        help="time a .spr model (optionally against onnxruntime)",
        description="Time a .spr model on random inputs: median/min/max latency, the per-layer breakdown, "
        "and onnxruntime on an ONNX file side by side with --vs (rounds of both alternate, so a busy period "
        "hits both).",
    )
    p.add_argument("model", help="the .spr model")
    p.add_argument("--vs", metavar="MODEL.onnx", help="also time this ONNX model with onnxruntime")
    p.add_argument("--threads", type=thread_count, help="threads for both runtimes (default or 0: every core)")
    p.add_argument("--batch", type=positive_int, help="batch size for inputs whose first dim is free (default 1)")
    p.add_argument("--repeats", type=positive_int, default=50, help="timed runs per round (default 50)")
    p.add_argument("--rounds", type=positive_int, default=3, help="rounds (default 3); the median over all runs")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="untimed runs first (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _onnxruntime_session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"--vs {path!r} is not an ONNX model onnxruntime can load ({first})") from None


def _ort_feed(session: Any, arrays: list[np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    ort_inputs = session.get_inputs()
    if len(ort_inputs) != len(arrays):
        raise ValueError(f"the ONNX model takes {len(ort_inputs)} input(s), the .spr model {len(arrays)}")
    ort_names = [i.name for i in ort_inputs]
    if sorted(ort_names) == sorted(names):  # same names: match by name, else by position
        by_name = dict(zip(names, arrays))
        return {n: by_name[n] for n in ort_names}
    return dict(zip(ort_names, arrays))


def _max_rel_diff(ours: list[np.ndarray], theirs: list[Any]) -> float:
    diffs = []
    for a, b in zip(ours, theirs):
        b = np.asarray(b)
        if a.shape != b.shape:
            diffs.append(math.inf)
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        scale = float(np.max(np.abs(b64))) if b.size else 0.0
        err = float(np.max(np.abs(a64 - b64))) if b.size else 0.0
        diffs.append(err / scale if scale > 0 else err)
    return max(diffs) if diffs else 0.0


def run(args: argparse.Namespace) -> int:
    import sparsert

    check_file(args.model, ".spr file")
    if args.vs:
        check_file(args.vs, "ONNX file")
    model = sparsert.load(args.model, threads=args.threads)
    threads = model.threads
    shapes = model_shapes(model, {}, batch=args.batch)
    arrays = random_inputs(model, shapes, args.seed)
    names = [s.name for s in model.inputs]
    session = feed = None
    ort_note = None
    if args.vs:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            ort_note = "onnxruntime is not installed (pip install onnxruntime): skipping --vs"
        if ort_note is None:
            session = _onnxruntime_session(args.vs, threads)
            feed = _ort_feed(session, arrays, names)

    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):  # alternate, so a busy period of the machine hits both
        ours += time_calls(lambda: model.run(arrays), args.warmup, args.repeats)
        if session is not None:
            theirs += time_calls(lambda: session.run(None, feed), args.warmup, args.repeats)
    result: dict[str, Any] = {
        "model": args.model, "cpu": sparsert.cpu_features(), "threads": threads,
        "input_shapes": [list(s) for s in shapes], "repeats": args.repeats, "rounds": args.rounds,
        "warmup": args.warmup, "sparsert": timing_stats(ours),
    }
    model.profile(arrays, repeats=min(args.repeats, 20))
    summary = model.summary()
    node_sum = summary.totals()["time_ms"] or 0.0
    result["sum_of_node_medians_ms"] = node_sum
    result["layers"] = [
        {"name": r["name"], "op": r["op"], "storage": r["weight_storage"], "kernel": r["kernel"],
         "flops": r["flops"], "time_ms": r["time_ms"]}
        for r in summary
    ]
    if session is not None:
        result["onnxruntime"] = dict(timing_stats(theirs), file=args.vs)
        result["speedup_vs_onnxruntime"] = result["onnxruntime"]["median_ms"] / result["sparsert"]["median_ms"]
        got = model.run(arrays)
        got = [got] if isinstance(got, np.ndarray) else list(got)
        result["max_rel_diff_vs_onnxruntime"] = _max_rel_diff(got, session.run(None, feed))
    noisy = [k for k in ("sparsert", "onnxruntime") if k in result and result[k]["spread"] > NOISY_SPREAD]
    result["noisy"] = noisy

    if args.json:
        if ort_note:
            result["note"] = ort_note
        print(json.dumps(result, indent=2))
        return 0
    s = result["sparsert"]
    print(f"{args.model}: inputs {', '.join(shape_text(x) for x in shapes)}, {threads} threads, "
          f"{sparsert.cpu_features()}; {args.rounds} rounds of {args.warmup} warm-up + {args.repeats} timed runs")
    print()
    print(summary.table())
    print(f"sum of the per-node medians: {node_sum:.3f} ms; end-to-end median: {s['median_ms']:.3f} ms "
          "(the difference is the time between nodes and around the call: thread hand-offs, input checks and "
          "output allocation, the Python call)")
    print()
    with_ort = "onnxruntime" in result
    head = ["runtime", "median ms", "min ms", "max ms", "spread"] + (["vs onnxruntime"] if with_ort else [])
    rows = [["sparsert", f"{s['median_ms']:.3f}", f"{s['min_ms']:.3f}", f"{s['max_ms']:.3f}",
             f"{s['spread']:.0%}"] + ([f"{result['speedup_vs_onnxruntime']:.2f}x"] if with_ort else [])]
    if with_ort:
        o = result["onnxruntime"]
        rows.append(["onnxruntime", f"{o['median_ms']:.3f}", f"{o['min_ms']:.3f}", f"{o['max_ms']:.3f}",
                     f"{o['spread']:.0%}", "1.00x"])
    print(table(head, rows, right=(1, 2, 3, 4, 5)))
    if noisy:
        print(f"NOISY: the timings of {', '.join(noisy)} vary by more than {NOISY_SPREAD:.0%} (interquartile range / "
              "median): the machine was busy; treat the ratio as unreliable and run again on a quiet machine")
    if with_ort and not noisy:
        ratio = result["speedup_vs_onnxruntime"]
        if ratio >= 1:
            print(f"sparsert is {ratio:.2f}x faster than onnxruntime on this model (medians, one process)")
        else:
            print(f"sparsert is {1 / ratio:.2f}x slower than onnxruntime on this model (medians, one process)")
    if with_ort:
        diff = result["max_rel_diff_vs_onnxruntime"]
        if diff <= 1e-3:
            print(f"outputs match onnxruntime's (max rel diff {diff:.2g})")
        else:
            print(f"outputs differ from onnxruntime's by max rel {diff:.2g}: expected when the .spr is a pruned "
                  "model and the ONNX file the dense one; if both are the same model, this is a bug worth reporting")
    if ort_note:
        print(ort_note)
    return 0
