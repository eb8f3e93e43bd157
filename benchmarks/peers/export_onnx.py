"""Write the benchmark models as ONNX files that DeepSparse 1.8 can read.

Run with the main Python (the one with sparsert, numpy and onnx), from a directory where
``benchmarks`` is importable (the repository root on ``PYTHONPATH``)::

    python -m benchmarks.peers.export_onnx --out ds-models

For each model in ``--models`` and each sparsity in ``--sparsity`` it writes
``<model>_s<percent>.onnx`` (e.g. ``resnet18_s90.onnx``): the model from
:func:`benchmarks.models.build`, magnitude-pruned with :func:`benchmarks.models.magnitude_prune`
(zeros left in the weights), emitted by :func:`benchmarks.models.to_onnx` and then made readable
by onnx 1.14 (what DeepSparse 1.8 pins):

* ``LayerNormalization`` (opset 17) is spelled as ReduceMean/Sub/Pow/Add/Sqrt/Div/Mul/Add, and
  ``Gelu`` (opset 20) as ``0.5 * x * (1 + Erf(x / sqrt(2)))`` -- the forms PyTorch exporters
  produce, which both DeepSparse and sparsert's ONNX importer fuse back;
* the opset import is lowered to ``--opset`` (default 13) and the IR version set to 8.

Every file is checked with ``onnx.checker`` and, when onnxruntime is installed, run once against
the original (opset 20) model; the largest difference is printed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import models

IR_VERSION = 8  # the newest IR onnx 1.14 (DeepSparse 1.8) reads
SUPPORTED_OPSETS = range(13, 18)  # ReduceMean keeps its `axes` attribute below opset 18
DEFAULT_MODELS = ("resnet18", "mobilenet_v2", "bert_encoder")


def _scalar(name: str, value: float) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array(value, np.float32), name)


def lower_model(model: Any, opset: int) -> Any:
    """Rewrite ops newer than ``opset`` into primitives, set the opset and IR version 8, in place."""
    from onnx import helper, shape_inference

    if opset not in SUPPORTED_OPSETS:
        raise ValueError(
            f"opset must be in {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1}, got {opset}"
        )
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes: list[Any] = []
    extra: list[Any] = []
    for i, node in enumerate(graph.node):
        p = f"{node.name or node.output[0]}.{i}"
        if node.op_type == "LayerNormalization":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            axis, eps = int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5))
            if axis != -1:
                raise ValueError(f"{node.name!r}: only LayerNormalization over the last axis is lowered")
            x, gamma, beta = node.input[0], node.input[1], node.input[2]
            extra += [_scalar(f"{p}.two", 2.0), _scalar(f"{p}.eps", eps)]
            nodes += [
                helper.make_node("ReduceMean", [x], [f"{p}.mean"], axes=[-1], keepdims=1),
                helper.make_node("Sub", [x, f"{p}.mean"], [f"{p}.d"]),
                helper.make_node("Pow", [f"{p}.d", f"{p}.two"], [f"{p}.sq"]),
                helper.make_node("ReduceMean", [f"{p}.sq"], [f"{p}.var"], axes=[-1], keepdims=1),
                helper.make_node("Add", [f"{p}.var", f"{p}.eps"], [f"{p}.vareps"]),
                helper.make_node("Sqrt", [f"{p}.vareps"], [f"{p}.std"]),
                helper.make_node("Div", [f"{p}.d", f"{p}.std"], [f"{p}.norm"]),
                helper.make_node("Mul", [f"{p}.norm", gamma], [f"{p}.scaled"]),
                helper.make_node("Add", [f"{p}.scaled", beta], [node.output[0]]),
            ]
        elif node.op_type == "Gelu":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            approx = attrs.get("approximate", b"none")
            if approx not in (b"none", "none"):
                raise ValueError(
                    f"{node.name!r}: only exact (erf) Gelu is lowered, got approximate={approx!r}"
                )
            x = node.input[0]
            extra += [
                _scalar(f"{p}.sqrt2", math.sqrt(2.0)),
                _scalar(f"{p}.one", 1.0),
                _scalar(f"{p}.half", 0.5),
            ]
            nodes += [
                helper.make_node("Div", [x, f"{p}.sqrt2"], [f"{p}.xs"]),
                helper.make_node("Erf", [f"{p}.xs"], [f"{p}.erf"]),
                helper.make_node("Add", [f"{p}.erf", f"{p}.one"], [f"{p}.onep"]),
                helper.make_node("Mul", [x, f"{p}.onep"], [f"{p}.xo"]),
                helper.make_node("Mul", [f"{p}.xo", f"{p}.half"], [node.output[0]]),
            ]
        else:
            nodes.append(node)
    for t in extra:
        if t.name in inits:
            raise ValueError(f"initializer name clash: {t.name!r}")
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(extra)
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", opset))
    model.ir_version = IR_VERSION
    # to_onnx leaves the output's shape open; onnx 1.14's checker wants one: take the inferred one.
    inferred = shape_inference.infer_shapes(model)
    for out, inf in zip(graph.output, inferred.graph.output):
        if not out.type.tensor_type.HasField("shape"):
            if not inf.type.tensor_type.HasField("shape"):
                raise ValueError(f"could not infer the shape of output {out.name!r}")
            out.type.CopyFrom(inf.type)
    return model


def export(
    out_dir: str, names: Sequence[str], sparsities: Sequence[float], opset: int = 13, check: bool = True,
    block_rows: int = 0,
) -> list[str]:
    """Write ``<name>_s<pct>.onnx`` files into ``out_dir`` (and, with ``block_rows``, the sparse
    ones also pruned in ``block_rows`` x 1 blocks as ``<name>_s<pct>b<block_rows>.onnx``); returns
    their paths."""
    import onnx

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    variants = [(s, 1) for s in sparsities] + [(s, block_rows) for s in sparsities if s > 0 and block_rows > 1]
    for name in names:
        for s, rows in variants:
            net = models.magnitude_prune(models.build(name), s, (rows, 1))
            original = models.to_onnx(net)
            model = lower_model(onnx.load_from_string(original), opset)
            onnx.checker.check_model(model)
            tag = f"{round(s * 100):d}" + (f"b{rows}" if rows > 1 else "")
            path = os.path.join(out_dir, f"{name}_s{tag}.onnx")
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(model.SerializeToString())
            os.replace(tmp, path)
            msg = f"{path}: opset {opset}, IR {model.ir_version}, sparsity {net.weight_sparsity():.3f}"
            if check:
                diff = _max_diff(original, model.SerializeToString(), net)
                if diff is not None:
                    msg += f", onnxruntime max |lowered - original| / max|original| = {diff:.2e}"
                    if not diff < 1e-3:
                        raise RuntimeError(f"{path}: lowered model differs from the original by {diff}")
            print(msg, flush=True)
            paths.append(path)
    return paths


def _max_diff(a: bytes, b: bytes, net: models.Net) -> float | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    x = np.random.default_rng(1).standard_normal((1, *net.input_shape)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    # No graph optimisation: onnxruntime would fuse the decompositions back and compare a kernel with itself.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ya = ort.InferenceSession(a, opts, providers=["CPUExecutionProvider"]).run(None, {net.input_name: x})[0]
    yb = ort.InferenceSession(b, opts, providers=["CPUExecutionProvider"]).run(None, {net.input_name: x})[0]
    return float(np.max(np.abs(ya - yb)) / max(1.0, float(np.max(np.abs(ya)))))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=models.MODEL_NAMES)
    ap.add_argument("--sparsity", nargs="+", type=float, default=[0.0, 0.9])
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    ap.add_argument("--block", type=int, default=0,
                    help="also write the sparse models pruned in BLOCKx1 blocks (<model>_s90b4.onnx for 4)")
    args = ap.parse_args(argv)
    export(args.out, args.models, args.sparsity, args.opset, check=not args.no_check, block_rows=args.block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
