"""Whole-network latency, one runtime and one thread count per process (the thread
pools of different libraries fight over the cores otherwise). This is the script
behind the README table:

    for t in 1 2; do for r in ort torch sparsert; do
      env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.compare_models $r $t
    done; done

Prints JSON lines: runtime, model, variant, threads, median ms (batch 1). Variants:
dense, u90 (90% magnitude-pruned), s50 (50% structured = inner width 0.5),
conv90 (sparsert.convert of the 90%-zero ONNX file). REPEATS=N sets the timed runs.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

from benchmarks import models as bm

VARIANTS = {
    "sparsert": ["dense", "u90", "s50", "conv90"],
    "ort": ["dense", "u90", "s50"],
    "torch": ["dense", "s50"],
}


def median_ms(f: Callable[[], Any], repeats: int) -> float:
    for _ in range(3):
        f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def net_for(name: str, variant: str) -> bm.Net:
    if variant == "s50":
        return bm.build(name, inner=0.5)
    net = bm.build(name)
    if variant in ("u90", "conv90"):
        bm.magnitude_prune(net, 0.9)
    return net


def time_one(runtime: str, threads: int, net: bm.Net, variant: str, x: np.ndarray, repeats: int) -> dict:
    extra: dict[str, Any] = {}
    if runtime == "sparsert":
        import sparsert

        if variant == "conv90":
            folder = tempfile.mkdtemp()
            onnx_path, spr_path = f"{folder}/m.onnx", f"{folder}/m.spr"
            with open(onnx_path, "wb") as f:
                f.write(bm.to_onnx(net))
            start = time.perf_counter()
            sparsert.convert(onnx_path, spr_path, input_shapes={net.input_name: x.shape})
            extra["convert_s"] = round(time.perf_counter() - start, 2)
            extra["spr_bytes"] = os.path.getsize(spr_path)
            extra["onnx_bytes"] = os.path.getsize(onnx_path)
            model = sparsert.load(spr_path, threads=threads)
        else:
            blob = bm.to_spr(net)
            extra["spr_bytes"] = len(blob)
            model = sparsert.load_bytes(blob, threads=threads)
        extra["ms"] = median_ms(lambda: model.run(x), repeats)
    elif runtime == "ort":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        sess = ort.InferenceSession(bm.to_onnx(net), options, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        extra["ms"] = median_ms(lambda: sess.run(None, feed), repeats)
    elif runtime == "torch":
        import torch

        torch.set_num_threads(threads)
        module = bm.to_torch(net).eval()
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            extra["ms"] = median_ms(lambda: module(xt), repeats)
    else:
        raise SystemExit(f"unknown runtime {runtime!r}: choose sparsert, ort or torch")
    extra["ms"] = round(extra["ms"], 2)
    return extra


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m benchmarks.compare_models sparsert|ort|torch THREADS [models]")
    runtime, threads = argv[0], int(argv[1])
    names = argv[2].split(",") if len(argv) > 2 else ["resnet18", "mobilenet_v2", "bert_encoder"]
    repeats = int(os.environ.get("REPEATS", "30"))
    for name in names:
        for variant in VARIANTS.get(runtime, []):
            net = net_for(name, variant)
            x = np.random.default_rng(1).standard_normal((1, *net.input_shape)).astype(np.float32)
            row = {"runtime": runtime, "model": name, "variant": variant, "threads": threads}
            row.update(time_one(runtime, threads, net, variant, x, repeats))
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
