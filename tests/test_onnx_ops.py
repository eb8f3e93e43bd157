"""The run-time ops real ONNX graphs use (indexing, shape computation, recurrent layers,
normalizations), each converted and run against onnxruntime on random data.

Inputs are graph inputs, never constants, so nothing is folded away by the converter:
these run in the runtime's kernels. Tolerances: float32 results within
rtol 1e-4 / atol 1e-5 of onnxruntime's; integer and bool results exactly equal.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import sparsert  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
_NP_TO_ONNX = {np.float32: TensorProto.FLOAT, np.int64: TensorProto.INT64, np.int32: TensorProto.INT32,
               np.bool_: TensorProto.BOOL}


def _elem(a: np.ndarray) -> int:
    return _NP_TO_ONNX[a.dtype.type]


def check(tmp_path: Any, nodes: list, feeds: dict[str, np.ndarray], outputs: list[str], opset: int = 17,
          inits: dict[str, np.ndarray] | None = None, dynamic: bool = False) -> sparsert.Model:
    """Convert the graph, run it on `feeds` and compare every output with onnxruntime.
    dynamic: declare every input dim symbolic, so shapes are only known at run time."""
    ins = [helper.make_tensor_value_info(k, _elem(v), [f"d{k}{i}" for i in range(v.ndim)] if dynamic else list(v.shape))
           for k, v in feeds.items()]
    outs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs]
    graph = helper.make_graph(nodes, "g", ins, outs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    # the outputs' element types, as onnx infers them (onnxruntime checks them)
    done = onnx.shape_inference.infer_shapes(model).graph
    inferred = {vi.name: vi.type.tensor_type.elem_type for vi in [*done.value_info, *done.output]
                if vi.type.tensor_type.elem_type}
    for o in model.graph.output:
        o.type.tensor_type.elem_type = inferred.get(o.name, TensorProto.FLOAT)
    src, dst = os.path.join(tmp_path, "m.onnx"), os.path.join(tmp_path, "m.spr")
    onnx.save(model, src)
    sparsert.convert(src, dst)
    m = sparsert.load(dst)
    want = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = m.run(feeds, as_dict=True)
    for name, w in zip(outputs, want):
        g = got[name]
        assert g.shape == w.shape, (name, g.shape, w.shape)
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=name)
        else:
            assert g.dtype == w.dtype, (name, g.dtype, w.dtype)
            np.testing.assert_array_equal(g, w, err_msg=name)
    return m


def f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# --------------------------------------------------------------------------- indexing


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dynamic", [False, True])
def test_gather_family(tmp_path: Any, rng: np.random.Generator, axis: int, dynamic: bool) -> None:
    x = f32(rng, 4, 5, 3)
    n = x.shape[axis]
    idx = rng.integers(-n, n, size=(2, 3)).astype(np.int64)
    elems = rng.integers(-n, n, size=tuple(2 if i == (axis % 3) else s for i, s in enumerate(x.shape))).astype(np.int64)
    nd = np.stack([rng.integers(0, 4, 6), rng.integers(0, 5, 6)], axis=-1).astype(np.int64).reshape(2, 3, 2)
    nodes = [
        helper.make_node("Gather", ["x", "i"], ["g"], axis=axis),
        helper.make_node("GatherElements", ["x", "e"], ["ge"], axis=axis),
        helper.make_node("GatherND", ["x", "nd"], ["gn"]),
    ]
    check(tmp_path, nodes, {"x": x, "i": idx, "e": elems, "nd": nd}, ["g", "ge", "gn"], dynamic=dynamic)


def test_gather_out_of_range_index_is_a_clear_error(tmp_path: Any, rng: np.random.Generator) -> None:
    x = f32(rng, 4, 5)
    m = check(tmp_path, [helper.make_node("Gather", ["x", "i"], ["g"], axis=0)],
              {"x": x, "i": np.array([1, -4], np.int64)}, ["g"])
    with pytest.raises(ValueError, match="index"):
        m.run({"x": x, "i": np.array([4, 0], np.int64)})


def test_slice_dynamic_bounds(tmp_path: Any, rng: np.random.Generator) -> None:
    x = f32(rng, 6, 7, 5)
    # the bounds are constants (the runtime plans every shape before running: an output
    # shape may depend on input shapes, not on input values); the data's dims are dynamic
    inits = {"s": np.array([1, -1], np.int64), "e": np.array([100, -6], np.int64),
             "a": np.array([0, 1], np.int64), "st": np.array([2, -1], np.int64)}
    check(tmp_path, [helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"])], {"x": x}, ["y"], inits=inits,
          dynamic=True)


def test_expand_tile_where(tmp_path: Any, rng: np.random.Generator) -> None:
    x = f32(rng, 3, 1, 4)
    feeds = {"x": x, "c": rng.random((3, 5, 4)) > 0.5, "y": f32(rng, 5, 4)}
    inits = {"shape": np.array([2, 3, 5, 4], np.int64), "reps": np.array([2, 1, 3], np.int64)}
    nodes = [
        helper.make_node("Expand", ["x", "shape"], ["ex"]),
        helper.make_node("Tile", ["x", "reps"], ["ti"]),
        helper.make_node("Where", ["c", "x", "y"], ["wh"]),
    ]
    check(tmp_path, nodes, feeds, ["ex", "ti", "wh"], inits=inits, dynamic=True)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_modes(tmp_path: Any, rng: np.random.Generator, mode: str) -> None:
    x = f32(rng, 2, 3, 5, 6)
    pads = np.array([0, 1, 2, 3, 0, 0, 1, 2], np.int64)
    ins = ["x", "p"] + (["v"] if mode == "constant" else [])
    inits = {"p": pads}
    if mode == "constant":
        inits["v"] = np.array(1.5, np.float32)
    check(tmp_path, [helper.make_node("Pad", ins, ["y"], mode=mode)], {"x": x}, ["y"], inits=inits, dynamic=True)


def test_pad_negative_crops(tmp_path: Any, rng: np.random.Generator) -> None:
    x = f32(rng, 3, 8)
    check(tmp_path, [helper.make_node("Pad", ["x", "p"], ["y"])], {"x": x}, ["y"],
          inits={"p": np.array([-1, 2, 0, -3], np.int64)})


@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum(tmp_path: Any, rng: np.random.Generator, exclusive: int, reverse: int) -> None:
    x = f32(rng, 3, 7, 2)
    check(tmp_path, [helper.make_node("CumSum", ["x", "ax"], ["y"], exclusive=exclusive, reverse=reverse)],
          {"x": x}, ["y"], inits={"ax": np.array(1, np.int64)})


def test_shape_arithmetic_at_run_time(tmp_path: Any, rng: np.random.Generator) -> None:
    # what transformer exports compute from the input: Shape, Gather, Range, ConstantOfShape,
    # Cast, comparisons, Not, Where, Size
    x = f32(rng, 3, 9)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["n"], axis=0),
        helper.make_node("Range", ["zero", "n", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
        helper.make_node("ConstantOfShape", ["s"], ["c"], value=numpy_helper.from_array(np.array([2.0], np.float32))),
        helper.make_node("Less", ["r", "half"], ["mask"]),
        helper.make_node("Not", ["mask"], ["nmask"]),
        helper.make_node("Where", ["nmask", "x", "c"], ["w"]),
        helper.make_node("Add", ["w", "rf"], ["y"]),
        helper.make_node("Size", ["x"], ["size"]),
        helper.make_node("Shape", ["x"], ["tail"], start=-1),
    ]
    inits = {"zero": np.array(0, np.int64), "one": np.array(1, np.int64), "half": np.array(4, np.int64)}
    for batch, width in ((3, 9), (1, 4)):
        check(tmp_path, nodes, {"x": f32(rng, batch, width)}, ["y", "size", "tail", "mask"], inits=inits,
              dynamic=True)


def test_isnan_isinf(tmp_path: Any) -> None:
    x = np.array([[0.0, np.nan, np.inf], [-np.inf, 1.0, -2.0]], np.float32)
    nodes = [helper.make_node("IsNaN", ["x"], ["a"]), helper.make_node("IsInf", ["x"], ["b"]),
             helper.make_node("IsInf", ["x"], ["c"], detect_negative=0)]
    check(tmp_path, nodes, {"x": x}, ["a", "b", "c"])


def test_integer_arithmetic_matches_onnxruntime(tmp_path: Any, rng: np.random.Generator) -> None:
    a = rng.integers(-50, 50, size=(4, 5)).astype(np.int64)
    b = rng.integers(1, 9, size=(5,)).astype(np.int64)
    nodes = [helper.make_node(op, ["a", "b"], [op.lower()]) for op in ("Add", "Sub", "Mul", "Div", "Max", "Min")]
    nodes.append(helper.make_node("Mod", ["a", "b"], ["mod"]))
    check(tmp_path, nodes, {"a": a, "b": b}, ["add", "sub", "mul", "div", "max", "min", "mod"])


# --------------------------------------------------------------------------- normalization


def test_instance_norm_lrn_prelu(tmp_path: Any, rng: np.random.Generator) -> None:
    x = f32(rng, 2, 5, 6, 7)
    inits = {"scale": f32(rng, 5), "bias": f32(rng, 5), "slope": np.abs(f32(rng, 5, 1, 1)) * 0.2}
    nodes = [
        helper.make_node("InstanceNormalization", ["x", "scale", "bias"], ["in"], epsilon=1e-5),
        helper.make_node("LRN", ["x"], ["lrn"], size=3, alpha=1e-3, beta=0.75, bias=1.0),
        helper.make_node("PRelu", ["x", "slope"], ["pr"]),
    ]
    check(tmp_path, nodes, {"x": x}, ["in", "lrn", "pr"], inits=inits)


def test_conv3d(tmp_path: Any, rng: np.random.Generator) -> None:
    x = f32(rng, 1, 3, 5, 6, 7)
    inits = {"w": f32(rng, 4, 3, 3, 2, 3), "b": f32(rng, 4)}
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 0, 1, 1, 1, 1], strides=[1, 2, 1])
    check(tmp_path, [node], {"x": x}, ["y"], inits=inits)


# --------------------------------------------------------------------------- recurrent layers


torch = pytest.importorskip("torch")


def _export_rnn(tmp_path: Any, module: Any, x: np.ndarray, opset: int) -> str:
    src = os.path.join(tmp_path, "rnn.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.from_numpy(x),), src, opset_version=opset, dynamo=False,
                          input_names=["x"], output_names=["y", "h"],
                          dynamic_axes={"x": {0: "batch", 1: "time"}} if module.batch_first else
                          {"x": {0: "time", 1: "batch"}})
    return src


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_torch_rnn_layers(tmp_path: Any, seed: int, kind: str, bidirectional: bool, layers: int) -> None:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cls = getattr(torch.nn, kind)
    module = cls(input_size=6, hidden_size=5, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    src = _export_rnn(tmp_path, module, f32(rng, 2, 4, 6), 14)
    dst = os.path.join(tmp_path, "rnn.spr")
    sparsert.convert(src, dst)
    m = sparsert.load(dst)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    for shape in ((2, 4, 6), (1, 9, 6), (3, 1, 6)):  # batch and sequence length stay dynamic
        x = f32(rng, *shape)
        want = sess.run(None, {"x": x})
        got = m.run({"x": x}, as_dict=True)
        for name, w in zip(["y", "h"], want):
            np.testing.assert_allclose(got[name], w, rtol=RTOL, atol=ATOL, err_msg=f"{name} {shape}")


def test_onnx_lstm_with_initial_state_and_sequence_lens_refused_or_right(tmp_path: Any,
                                                                        rng: np.random.Generator) -> None:
    # an ONNX LSTM with initial states (inputs 5, 6), run against onnxruntime
    t, b, i, h = 5, 2, 4, 3
    inits = {"W": f32(rng, 1, 4 * h, i), "R": f32(rng, 1, 4 * h, h), "B": f32(rng, 1, 8 * h)}
    feeds = {"x": f32(rng, t, b, i), "h0": f32(rng, 1, b, h), "c0": f32(rng, 1, b, h)}
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "", "h0", "c0"], ["y", "yh", "yc"], hidden_size=h)
    check(tmp_path, [node], feeds, ["y", "yh", "yc"], inits=inits)


def test_dynamic_model_that_plans_only_at_some_sizes_loads(tmp_path: Any, rng: np.random.Generator) -> None:
    # LayerNormalization over the last two dims with a [3, 5] gamma: x [a, b, c] runs only
    # with b = 3 and c = 5, a size the loader's trial plans (all dynamic dims equal) never
    # hits. It must still convert and run (found by tests/test_fuzz_convert.py), and a
    # wrong size must be a clear error.
    gamma = rng.standard_normal((3, 5)).astype(np.float32)
    beta = rng.standard_normal((3, 5)).astype(np.float32)
    x = f32(rng, 2, 3, 5)
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-2)]
    m = check(tmp_path, nodes, {"x": x}, ["y"], inits={"g": gamma, "b": beta}, dynamic=True)
    assert m.outputs[0].shape is None and "run time" in str(m.outputs[0])
    assert m.output_shapes((4, 3, 5)) == [(4, 3, 5)]
    with pytest.raises(ValueError, match="gamma|normalized shape"):
        m.run({"x": f32(rng, 2, 4, 5)})
    sess = sparsert.InferenceSession(os.path.join(tmp_path, "m.spr"))
    assert sess.get_outputs()[0].shape is None
