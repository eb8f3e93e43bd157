"""Writes the fuzz seed corpus: one small valid .spr file per op and storage kind.

    python fuzz/make_seeds.py fuzz/seeds

Every file is loaded and run once with the native runtime before it is kept,
so a seed that does not load is an error here rather than a useless seed.
The files are small (a few hundred bytes to a few KiB) so that the fuzzer's
mutations stay cheap and land in the body and the tensor table.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import sparsert  # noqa: E402
from sparsert import format as spr  # noqa: E402

RNG = np.random.default_rng(9)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def sparse(*shape: int, density: float = 0.3) -> np.ndarray:
    w = randn(*shape)
    w[RNG.random(shape) >= density] = 0.0
    return w


def single(
    op: str,
    x_shape: tuple[int, ...],
    attrs: dict | None = None,
    constants: tuple[np.ndarray | None, ...] = (),
    outputs: int = 1,
    storage: str = "dense",
) -> spr.ModelFile:
    b = sparsert.GraphBuilder(op.lower())
    x = b.input("x", x_shape)
    ins: list[str | None] = [x]
    for i, c in enumerate(constants):
        ins.append(None if c is None else b.constant(f"c{i}", c, storage=storage if i == 0 else "dense"))
    out = b.node(op, ins, attrs or {}, outputs=outputs)
    for o in (out,) if isinstance(out, str) else out:
        b.output(o)
    return b.build()


def with_index_bits(model: spr.ModelFile, bits: int) -> spr.ModelFile:
    """The same model with every CSR tensor re-packed with `bits`-bit column indices."""
    tensors = []
    for t in model.tensors:
        if t.storage == "csr":
            t = spr.Tensor.csr_from_dense(t.name, t.to_dense(), index_bits=bits)
        tensors.append(t)
    model.tensors = tensors
    return model


def seeds() -> Iterator[tuple[str, Callable[[], spr.ModelFile]]]:
    # Linear: dense, CSR with 16- and 32-bit indices, fused activations, an empty row, sparsity 1.0
    yield "linear_dense", lambda: single("Linear", (-1, 8), {}, (randn(4, 8), randn(4)))
    yield (
        "linear_csr16",
        lambda: single("Linear", (-1, 8), {"activation": "relu"}, (sparse(4, 8), randn(4)), storage="csr"),
    )
    yield (
        "linear_csr32",
        lambda: with_index_bits(
            single("Linear", (-1, 8), {"activation": "gelu"}, (sparse(4, 8),), storage="csr"), 32
        ),
    )
    w_empty = sparse(5, 6)
    w_empty[2] = 0.0
    yield (
        "linear_csr_empty_row",
        lambda: single(
            "Linear",
            (2, 3, 6),
            {"activation": "clip", "activation_params": [-1.0, 1.0]},
            (w_empty,),
            storage="csr",
        ),
    )
    yield (
        "linear_csr_all_zero",
        lambda: single("Linear", (1, 4), {}, (np.zeros((3, 4), np.float32),), storage="csr"),
    )
    yield "softmax", lambda: single("Softmax", (-1, 5), {"axis": -1})
    for op, attrs in [
        ("Relu", {}),
        ("Clip", {"min": -0.5, "max": 0.5}),
        ("LeakyRelu", {"alpha": 0.1}),
        ("Sigmoid", {}),
        ("HardSigmoid", {"alpha": 0.2}),
        ("HardSwish", {}),
        ("Silu", {}),
        ("Tanh", {}),
        ("Gelu", {"approximate": "tanh"}),
    ]:
        yield op.lower(), lambda op=op, attrs=attrs: single(op, (2, 3), attrs)
    for op in ("Add", "Sub", "Mul", "Div"):
        yield f"{op.lower()}_broadcast", lambda op=op: single(op, (-1, 3, 4), {}, (randn(1, 4) + 2.0,))
    yield "flatten", lambda: single("Flatten", (-1, 2, 3, 2), {"axis": 1})
    yield "reshape", lambda: single("Reshape", (-1, 6), {"shape": [0, 2, -1]})
    yield (
        "maxpool",
        lambda: single(
            "MaxPool",
            (1, 2, 5, 5),
            {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
        ),
    )
    yield (
        "avgpool",
        lambda: single(
            "AveragePool", (1, 2, 5, 5), {"kernel_shape": [2, 2], "count_include_pad": 1, "pads": [1, 0, 1, 0]}
        ),
    )
    yield "global_avgpool", lambda: single("GlobalAveragePool", (1, 3, 4, 4))
    yield "split", lambda: single("Split", (2, 6), {"axis": 1, "split": [2, 4]}, outputs=2)
    yield "transpose", lambda: single("Transpose", (2, 3, 4), {"perm": [2, 0, 1]})
    yield (
        "resize_nearest",
        lambda: single(
            "Resize",
            (1, 1, 3, 3),
            {
                "mode": "nearest",
                "scales": [2.0, 2.0],
                "coordinate_transformation_mode": "asymmetric",
                "nearest_mode": "floor",
            },
        ),
    )
    yield "resize_linear", lambda: single("Resize", (1, 2, 3, 4), {"mode": "linear", "sizes": [5, 3]})
    yield "reduce_mean", lambda: single("ReduceMean", (2, 3, 4), {"axes": [1, 2], "keepdims": 0})
    yield (
        "layernorm",
        lambda: single("LayerNormalization", (2, 3, 4), {"axis": -1, "epsilon": 1e-5}, (randn(4), randn(4))),
    )
    yield "matmul_const", lambda: single("MatMul", (-1, 3, 4), {}, (randn(4, 2),))
    yield (
        "conv_dense",
        lambda: single(
            "Conv",
            (-1, 2, 5, 5),
            {"pads": [1, 1, 1, 1], "strides": [2, 1], "activation": "relu"},
            (randn(3, 2, 3, 3), randn(3)),
        ),
    )
    yield (
        "conv_csr",
        lambda: single(
            "Conv", (1, 4, 4, 4), {"group": 2, "dilations": [2, 2]}, (sparse(4, 2, 2, 2),), storage="csr"
        ),
    )
    yield (
        "conv_csr32",
        lambda: with_index_bits(
            single("Conv", (1, 2, 4, 4), {"activation": "hardswish"}, (sparse(2, 2, 3, 3),), storage="csr"),
            32,
        ),
    )
    yield (
        "conv_transpose",
        lambda: single(
            "ConvTranspose",
            (1, 2, 3, 3),
            {"strides": [2, 2], "output_padding": [1, 1]},
            (randn(2, 3, 3, 3), randn(3)),
        ),
    )
    yield (
        "batchnorm",
        lambda: single(
            "BatchNormalization",
            (1, 3, 2, 2),
            {"epsilon": 1e-3},
            (randn(3), randn(3), randn(3), np.abs(randn(3)) + 0.5),
        ),
    )

    def two_inputs() -> spr.ModelFile:
        b = sparsert.GraphBuilder("two_inputs")
        a = b.input("a", (-1, 2, 3))
        c = b.input("b", (-1, 3, 2))
        m = b.node("MatMul", [a, c])
        cat = b.node("Concat", [m, m], {"axis": 1})
        b.output(cat)
        b.output(a)  # a graph input that is also an output
        return b.build()

    yield "matmul_concat_two_inputs", two_inputs

    def mlp() -> spr.ModelFile:
        b = sparsert.GraphBuilder(
            "mlp",
            metadata={
                "note": "seed",
                "ints": [1, 2],
                "floats": [0.5],
                "strings": ["a", "b"],
                "pi": 3.14,
                "n": 7,
            },
        )
        x = b.input("x", (-1, 6))
        h = b.node("Linear", [x, b.constant("w1", sparse(8, 6), storage="csr"), b.constant("b1", randn(8))])
        h = b.node("Relu", [h])
        h = b.node("Linear", [h, b.constant("w2", randn(3, 8)), b.constant("b2", randn(3))])
        b.output(b.node("Softmax", [h], {"axis": -1}), "y")
        return b.build()

    yield "mlp_metadata", mlp

    def cnn() -> spr.ModelFile:
        b = sparsert.GraphBuilder("cnn")
        x = b.input("x", (-1, 1, 6, 6))
        h = b.node(
            "Conv",
            [x, b.constant("k", sparse(4, 1, 3, 3, density=0.5), storage="csr")],
            {"pads": [1, 1, 1, 1]},
        )
        h = b.node(
            "BatchNormalization",
            [
                h,
                b.constant("s", randn(4)),
                b.constant("bb", randn(4)),
                b.constant("m", randn(4)),
                b.constant("v", np.abs(randn(4)) + 1.0),
            ],
        )
        h = b.node("Relu", [h])
        h = b.node("MaxPool", [h], {"kernel_shape": [2, 2]})
        h = b.node("Flatten", [h], {"axis": 1})
        b.output(b.node("Linear", [h, b.constant("fc", randn(3, 36)), b.constant("fcb", randn(3))]), "y")
        return b.build()

    yield "cnn_fusion", cnn

    def int_constants() -> spr.ModelFile:
        b = sparsert.GraphBuilder("ints")
        x = b.input("x", (2, 2))
        b.constant("i32", np.arange(3, dtype=np.int32))
        b.constant("i64", np.arange(2, dtype=np.int64))
        y = b.node("Add", [x, b.constant("c", randn(2, 2))])
        b.output(y)
        mf = b.build()
        mf.tensors += [
            spr.Tensor.dense("unused_i32", np.arange(3, dtype=np.int32)),
            spr.Tensor.dense("unused_i64", np.arange(2, dtype=np.int64)),
            spr.Tensor.dense("empty", np.zeros((0, 3), np.float32)),
        ]
        return mf

    yield "int_and_empty_constants", int_constants


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", help="folder to write the seeds into")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    count = 0
    for name, make in seeds():
        data = spr.to_bytes(make())
        model = sparsert.load_bytes(data, threads=1)
        inputs = [np.ones([1 if d < 0 else d for d in s.shape], np.float32) for s in model.inputs]
        model.run(inputs)
        with open(os.path.join(args.out, f"{name}.spr"), "wb") as f:
            f.write(data)
        count += 1
    print(f"wrote {count} seeds to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
