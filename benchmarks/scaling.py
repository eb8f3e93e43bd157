"""Load and convert time against graph size: both must grow linearly.

    python benchmarks/scaling.py [--sizes 2000,8000,32000]

Prints, per case, the time at each size and the ratio to the previous size (a ratio near
the size ratio is linear; near its square is quadratic). Small files must not make the
loader or the converter do quadratic work (issue 12). Timings only: no assertions here;
tests bound the work by construction (hash lookups, index maps kept current).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import sparsert


def concat_of_constants(n: int) -> bytes:
    b = sparsert.GraphBuilder("concat")
    x = b.input("x", (1, 1))
    cs = [b.constant(f"c{i}", np.ones((1, 1), np.float32)) for i in range(n)]
    b.output(b.node("Concat", [x, *cs], {"axis": 0}))
    return b.to_bytes()


def onnx_chain(n: int, kind: str):  # noqa: ANN201 - an onnx.ModelProto
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, prev = [], [], "x"
    for i in range(n):
        if kind == "maxpool":
            nodes.append(helper.make_node("MaxPool", [prev], [f"p{i}"], kernel_shape=[1, 1]))
            prev = f"p{i}"
            continue
        inits.append(numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), f"w{i}"))
        inits += [numpy_helper.from_array(np.ones(2, np.float32), f"{k}{i}") for k in "sbmv"]
        nodes += [
            helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"]),
            helper.make_node("BatchNormalization", [f"c{i}", f"s{i}", f"b{i}", f"m{i}", f"v{i}"], [f"n{i}"]),
            helper.make_node("Relu", [f"n{i}"], [f"r{i}"]),
            helper.make_node("Add", [f"r{i}", prev], [f"a{i}"]),
        ]
        prev = f"a{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2000,8000,32000")
    sizes = [int(s) for s in p.parse_args().sizes.split(",")]
    print(f"# {platform.processor() or platform.machine()}, sparsert {sparsert.__version__}")
    cases = [("load: Concat of N constants", lambda n: sparsert.load_bytes(concat_of_constants(n)))]
    try:
        import sparsert.onnx as so

        cases += [
            ("convert: N chained MaxPools", lambda n: so.convert_model(onnx_chain(n, "maxpool"))),
            ("convert: N Conv+BN+ReLU+Add blocks", lambda n: so.convert_model(onnx_chain(n // 4, "convbn"))),
        ]
    except ImportError:
        pass
    for name, fn in cases:
        prev = None
        for n in sizes:
            t0 = time.perf_counter()
            fn(n)
            dt = time.perf_counter() - t0
            ratio = f"  x{dt / prev:.1f} for x{n / prev_n:.0f} nodes" if prev else ""
            print(f"{name:38s} N={n:6d}: {dt:7.2f} s{ratio}", flush=True)
            prev, prev_n = dt, n


if __name__ == "__main__":
    main()
