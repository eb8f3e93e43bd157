"""sparsert.convert on ONNX graphs written with onnx.helper: every opset form, folding, errors.

Outputs are compared with onnxruntime: |sparsert - onnxruntime| <= 1e-4 + 1e-4 * |onnxruntime|
element-wise. Weights and inputs come from the printed ``seed`` (tests/conftest.py).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import pytest

import sparsert
from sparsert import format as spr

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sparsert.onnx import convert_model, parse_input_shape, parse_prune_spec  # noqa: E402

RTOL = ATOL = 1e-4
FLOAT = TensorProto.FLOAT


def requires_ops(*ops: str) -> pytest.MarkDecorator:
    missing = sorted(set(ops) - set(sparsert.supported_ops()))
    return pytest.mark.skipif(bool(missing), reason=f"this build of the runtime lacks op(s) {missing}")


def _ir_version(opset: int) -> int:
    return 8 if opset <= 18 else (9 if opset <= 20 else 10)


def make(
    nodes: list,
    inputs: dict[str, Sequence[int | str]],
    outputs: Sequence[str],
    opset: int,
    inits: dict[str, np.ndarray] | None = None,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, FLOAT, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info(o, FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
    model.ir_version = _ir_version(opset)
    return model


def const_node(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name + "_v")
    )


def run_both(
    tmp_path: os.PathLike[str], model: onnx.ModelProto, feeds: dict[str, np.ndarray], **kwargs: object
) -> tuple[sparsert.Model, str]:
    src, dst = os.path.join(tmp_path, "m.onnx"), os.path.join(tmp_path, "m.spr")
    onnx.save(model, src)
    sparsert.convert(src, dst, **kwargs)
    m = sparsert.load(dst)
    want = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = m.run(feeds, as_dict=True)
    for spec, w in zip(m.outputs, want):
        assert got[spec.name].shape == w.shape, spec.name
        np.testing.assert_allclose(got[spec.name], w, rtol=RTOL, atol=ATOL, err_msg=spec.name)
    return m, dst


def ops_of(path: str) -> list[str]:
    """Op types as the graph runs (after the loader's fusions)."""
    return [n.op_type for n in sparsert.load(path).nodes]


def randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# --------------------------------------------------------------------------- weights, Gemm, shape folding


def test_constant_node_weights_and_gemm(tmp_path: os.PathLike[str], rng: np.random.Generator) -> None:
    w1, b1 = randn(rng, 12, 7), randn(rng, 12)  # transB=1: W is [N, K]
    w2, c2 = randn(rng, 12, 5), randn(rng, 3, 5)  # transB=0, C is a full [M, N] matrix
    w3 = randn(rng, 9, 5)
    nodes = [
        const_node("w1", w1),
        const_node("b1", b1),
        const_node("w2", w2),
        const_node("c2", c2),
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("Gemm", ["r1", "w2", "c2"], ["h2"], alpha=1.5, beta=0.25),
        helper.make_node("Identity", ["h2"], ["h2i"]),
        helper.make_node("Dropout", ["h2i"], ["h2d"]),
        helper.make_node("Transpose", ["h2d"], ["h2t"], perm=[1, 0]),
        helper.make_node("Gemm", ["h2t", "w3"], ["y"], transA=1, transB=1),
    ]
    model = make(nodes, {"x": [3, 7]}, ["y"], 13, {"w3": w3})
    _, dst = run_both(tmp_path, model, {"x": randn(rng, 3, 7)})
    lin = [n for n in sparsert.load(dst).nodes if n.op_type == "Linear"]
    assert len(lin) == 3 and lin[0].attrs.get("activation") == "relu"
    assert "Identity" not in ops_of(dst) and "Dropout" not in ops_of(dst)


def _shape_subgraph_model(opset: int, w: np.ndarray) -> onnx.ModelProto:
    """y = reshape(x, [N, -1]) @ W + range(4) — with the [N, -1] target computed from Shape(x)."""
    if opset >= 13:
        unsq = [helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"])]
        inits = {"ax0": np.array([0], dtype=np.int64)}
    else:
        unsq = [helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0])]
        inits = {}
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        const_node("zero", np.array(0, dtype=np.int64)),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        *unsq,
        const_node("minus1", np.array([-1], dtype=np.int64)),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        # weight from a constant subgraph: Reshape of a constant, Cast, Mul
        const_node("wflat", w.reshape(-1).astype(np.float64)),
        helper.make_node("Cast", ["wflat"], ["wflat32"], to=FLOAT),
        const_node("wshape", np.array(w.shape, dtype=np.int64)),
        helper.make_node("Reshape", ["wflat32", "wshape"], ["w"]),
        helper.make_node("MatMul", ["flat", "w"], ["mm"]),
        # bias from Range + Cast + ConstantOfShape + Expand
        const_node("r0", np.array(0, dtype=np.int64)),
        const_node("r1", np.array(4, dtype=np.int64)),
        const_node("r2", np.array(1, dtype=np.int64)),
        helper.make_node("Range", ["r0", "r1", "r2"], ["rng"]),
        helper.make_node("Cast", ["rng"], ["rngf"], to=FLOAT),
        helper.make_node("Shape", ["mm"], ["mms"]),
        helper.make_node(
            "ConstantOfShape",
            ["mms"],
            ["ones"],
            value=numpy_helper.from_array(np.array([1.0], dtype=np.float32)),
        ),
        helper.make_node("Mul", ["ones", "rngf"], ["bias"]),
        helper.make_node("Add", ["mm", "bias"], ["pre"]),
        helper.make_node("Identity", ["pre"], ["y"]),
    ]
    return make(nodes, {"x": ["N", 3, 4, 2]}, ["y"], opset, inits)


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_shape_subgraph_folded(tmp_path: os.PathLike[str], rng: np.random.Generator, opset: int) -> None:
    w = randn(rng, 24, 4)
    model = _shape_subgraph_model(opset, w)
    src, dst = os.path.join(tmp_path, "m.onnx"), os.path.join(tmp_path, "m.spr")
    onnx.save(model, src)
    # N stays dynamic: the Shape/Gather/Concat subgraph runs in the runtime, for any N
    sparsert.convert(src, dst)
    m = sparsert.load(dst)
    assert m.inputs[0].shape == (-1, 3, 4, 2) and m.inputs[0].dim_names[0] == "N"
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    for n in (1, 3):
        xn = randn(rng, n, 3, 4, 2)
        np.testing.assert_allclose(m.run(xn), sess.run(None, {"x": xn})[0], rtol=RTOL, atol=ATOL)
    # with N fixed, the whole subgraph folds away
    x = randn(rng, 5, 3, 4, 2)
    _, dst = run_both(tmp_path, model, {"x": x}, input_shapes={"x": (5, 3, 4, 2)})
    ops = ops_of(dst)
    assert "Linear" in ops and "Add" not in ops  # Range/Expand bias folded into the Linear
    assert set(ops) <= {"Reshape", "Linear"}


def test_input_shape_errors() -> None:
    model = _shape_subgraph_model(13, np.zeros((24, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="not inputs of the model"):
        convert_model(model, input_shapes={"y": (1, 2)})
    with pytest.raises(ValueError, match="rank 3"):
        convert_model(model, input_shapes={"x": (1, 3, 4)})
    with pytest.raises(ValueError, match="fixes it to 3"):
        convert_model(model, input_shapes={"x": (1, 2, 4, 2)})
    with pytest.raises(ValueError, match=">= 1"):
        convert_model(model, input_shapes={"x": (-1, 3, 4, 2)})


# --------------------------------------------------------------------------- opset forms


@pytest.mark.parametrize("opset", [11, 13, 18])
@requires_ops("Split", "Concat", "ReduceMean")
def test_split_softmax_reducemean_forms(
    tmp_path: os.PathLike[str], rng: np.random.Generator, opset: int
) -> None:
    inits: dict[str, np.ndarray] = {}
    if opset < 13:
        split = helper.make_node("Split", ["x"], ["a", "b", "c"], axis=2, split=[1, 3, 2])
    else:
        inits["sizes"] = np.array([1, 3, 2], dtype=np.int64)
        split = helper.make_node("Split", ["x", "sizes"], ["a", "b", "c"], axis=2)
    if opset < 18:
        rm = helper.make_node("ReduceMean", ["b"], ["m"], axes=[1, -1], keepdims=1)
        rm2 = helper.make_node("ReduceMean", ["c"], ["m2"], keepdims=0)  # all axes
    else:
        inits["axes"] = np.array([1, -1], dtype=np.int64)
        rm = helper.make_node("ReduceMean", ["b", "axes"], ["m"], keepdims=1)
        rm2 = helper.make_node("ReduceMean", ["c"], ["m2"], keepdims=0)
    nodes = [
        split,
        # axis=1 on a rank-3 tensor: opset 11 normalises over dims 1 and 2 together
        helper.make_node("Softmax", ["a"], ["sa"], axis=1),
        helper.make_node("Softmax", ["x"], ["sx"]),  # default axis: 1 before opset 13, -1 after
        rm,
        rm2,
        helper.make_node("Concat", ["sa", "b", "c"], ["cat"], axis=-1),
    ]
    model = make(nodes, {"x": [2, 4, 6]}, ["sa", "sx", "m", "m2", "cat"], opset, inits)
    run_both(tmp_path, model, {"x": randn(rng, 2, 4, 6)})


@pytest.mark.parametrize(
    "form",
    [
        "upsample9",
        "resize10",
        "resize11_scales",
        "resize13_sizes",
        "resize18_axes",
        "resize11_align",
        "resize13_pytorch_half",
    ],
)
@requires_ops("Resize")
def test_resize_forms(tmp_path: os.PathLike[str], rng: np.random.Generator, form: str) -> None:
    scales = np.array([1, 1, 2, 1.5], dtype=np.float32)
    empty = np.array([], dtype=np.float32)
    nodes, inits, opset = [], {}, 13
    if form == "upsample9":
        opset, inits = 9, {"scales": scales}
        nodes = [helper.make_node("Upsample", ["x", "scales"], ["y"], mode="nearest")]
    elif form == "resize10":
        opset, inits = 10, {"scales": np.array([1, 1, 2, 2], dtype=np.float32)}
        nodes = [helper.make_node("Resize", ["x", "scales"], ["y"], mode="linear")]
    elif form in ("resize11_scales", "resize11_align"):
        opset, inits = 11, {"roi": empty, "scales": scales}
        coord = "align_corners" if form == "resize11_align" else "half_pixel"
        nodes = [
            helper.make_node(
                "Resize", ["x", "roi", "scales"], ["y"], mode="linear", coordinate_transformation_mode=coord
            )
        ]
    elif form in ("resize13_sizes", "resize13_pytorch_half"):
        inits = {"sizes": np.array([2, 3, 7, 13], dtype=np.int64)}
        coord = "pytorch_half_pixel" if form == "resize13_pytorch_half" else "asymmetric"
        mode = "linear" if form == "resize13_pytorch_half" else "nearest"
        nodes = [
            helper.make_node(
                "Resize",
                ["x", "", "", "sizes"],
                ["y"],
                mode=mode,
                coordinate_transformation_mode=coord,
                nearest_mode="floor",
            )
        ]
    elif form == "resize18_axes":
        opset, inits = 18, {"scales": np.array([3, 2], dtype=np.float32)}
        nodes = [
            helper.make_node(
                "Resize",
                ["x", "", "scales"],
                ["y"],
                mode="nearest",
                axes=[2, 3],
                nearest_mode="round_prefer_ceil",
            )
        ]
    model = make(nodes, {"x": [2, 3, 5, 6]}, ["y"], opset, inits)
    _, dst = run_both(tmp_path, model, {"x": randn(rng, 2, 3, 5, 6)})
    assert ops_of(dst) == ["Resize"]


@pytest.mark.parametrize("opset", [6, 11, 13])
def test_clip_forms(tmp_path: os.PathLike[str], rng: np.random.Generator, opset: int) -> None:
    def clip(x: str, y: str, lo: float | None, hi: float | None) -> list:
        if opset < 11:
            kw = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
            return [helper.make_node("Clip", [x], [y], **kw)]
        ins = [x, "", ""]
        out = []
        for k, v in ((1, lo), (2, hi)):
            if v is not None:
                ins[k] = f"{y}_{k}"
                out.append(const_node(ins[k], np.array(v, dtype=np.float32)))
        return out + [helper.make_node("Clip", ins, [y])]

    nodes = (
        clip("x", "r6", 0.0, 6.0)
        + clip("x", "r", 0.0, None)
        + clip("x", "c", -0.5, 0.25)
        + clip("x", "lo", None, 0.5)
    )
    model = make(nodes, {"x": [3, 17]}, ["r6", "r", "c", "lo"], opset)
    x = randn(rng, 3, 17) * 5
    _, dst = run_both(tmp_path, model, {"x": x})
    assert ops_of(dst) == ["Clip", "Relu", "Clip", "Clip"]


@requires_ops("Transpose", "MatMul", "LayerNormalization")
def test_activation_ops_and_fusions(tmp_path: os.PathLike[str], rng: np.random.Generator) -> None:
    w = randn(rng, 8, 8)
    gamma, beta = randn(rng, 8), randn(rng, 8)
    nodes = [
        # erf GELU decomposition as torch < opset 20 writes it
        const_node("sqrt2", np.array(1.4142135, dtype=np.float32)),
        const_node("one", np.array(1.0, np.float32)),
        const_node("half", np.array(0.5, dtype=np.float32)),
        helper.make_node("Div", ["x", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["e1"]),
        helper.make_node("Mul", ["x", "e1"], ["xe"]),
        helper.make_node("Mul", ["xe", "half"], ["gelu"]),
        # x * clip(x + 3, 0, 6) / 6 -> HardSwish
        const_node("three", np.array(3.0, np.float32)),
        const_node("six", np.array(6.0, np.float32)),
        const_node("zero", np.array(0.0, np.float32)),
        helper.make_node("Add", ["gelu", "three"], ["p3"]),
        helper.make_node("Clip", ["p3", "zero", "six"], ["cl"]),
        helper.make_node("Mul", ["gelu", "cl"], ["m"]),
        helper.make_node("Div", ["m", "six"], ["hsw"]),
        # x * sigmoid(x) -> SiLU
        helper.make_node("Sigmoid", ["hsw"], ["sg"]),
        helper.make_node("Mul", ["hsw", "sg"], ["silu"]),
        # LayerNorm decomposition + affine
        helper.make_node("ReduceMean", ["silu"], ["mu"], axes=[-1]),
        helper.make_node("Sub", ["silu", "mu"], ["xc"]),
        const_node("two", np.array(2.0, np.float32)),
        helper.make_node("Pow", ["xc", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
        const_node("eps", np.array(1e-5, np.float32)),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Div", ["xc", "sd"], ["nrm"]),
        helper.make_node("Mul", ["nrm", "gamma"], ["ng"]),
        helper.make_node("Add", ["ng", "beta"], ["ln"]),
        # MatMul with a constant -> Linear, then activations that stay standalone
        helper.make_node("MatMul", ["ln", "w"], ["lin"]),
        helper.make_node("LeakyRelu", ["lin"], ["lr"], alpha=0.2),
        helper.make_node("HardSigmoid", ["x"], ["hs"]),
        helper.make_node("Tanh", ["hs"], ["th"]),
        helper.make_node("Neg", ["th"], ["ng2"]),
        helper.make_node("Pow", ["ng2", "two"], ["p2"]),
        helper.make_node("Sum", ["p2", "lr", "x"], ["sum"]),
        # MatMul between activations, Transpose
        helper.make_node("Transpose", ["sum"], ["sumT"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["sum", "sumT"], ["y"]),
    ]
    model = make(nodes, {"x": [2, 5, 8]}, ["y"], 13, {"w": w, "gamma": gamma, "beta": beta})
    _, dst = run_both(tmp_path, model, {"x": randn(rng, 2, 5, 8)})
    ops = ops_of(dst)
    assert "LayerNormalization" in ops and "Gelu" in ops and "HardSwish" in ops and "Silu" in ops
    lin = [n for n in sparsert.load(dst).nodes if n.op_type == "Linear"]
    assert lin[0].attrs["activation"] == "leaky_relu"


@requires_ops("LayerNormalization")
@pytest.mark.parametrize("opset", [17, 20])
def test_layernorm_and_gelu_ops(tmp_path: os.PathLike[str], rng: np.random.Generator, opset: int) -> None:
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], axis=-2, epsilon=1e-3)]
    if opset >= 20:
        nodes.append(helper.make_node("Gelu", ["ln"], ["y"], approximate="tanh"))
    else:
        nodes.append(helper.make_node("Relu", ["ln"], ["y"]))
    model = make(nodes, {"x": [2, 3, 4, 5]}, ["y"], opset, {"g": randn(rng, 4, 5), "b": randn(rng, 4, 5)})
    run_both(tmp_path, model, {"x": randn(rng, 2, 3, 4, 5)})


@requires_ops("Split")
def test_slice_gather_squeeze_on_activations(tmp_path: os.PathLike[str], rng: np.random.Generator) -> None:
    i64 = np.int64
    inits = {
        "st": np.array([1, -3], i64),
        "en": np.array([4, 100], i64),
        "ax": np.array([1, 2], i64),
        "idx": np.array(2, i64),
        "sq": np.array([1], i64),
        "ids": np.array([0, 1], i64),
    }
    nodes = [
        helper.make_node("Slice", ["x", "st", "en", "ax"], ["s"]),
        helper.make_node("Gather", ["x", "idx"], ["g"], axis=1),
        helper.make_node("Gather", ["x", "ids"], ["g2"], axis=2),
        helper.make_node("Unsqueeze", ["g", "sq"], ["u"]),
        helper.make_node("Squeeze", ["u", "sq"], ["y2"]),
        helper.make_node("Flatten", ["s"], ["y1"], axis=2),
    ]
    model = make(nodes, {"x": [2, 5, 7]}, ["y1", "y2", "g2"], 13, inits)
    run_both(tmp_path, model, {"x": randn(rng, 2, 5, 7)})


# --------------------------------------------------------------------------- convolution


@requires_ops("Conv", "BatchNormalization", "AveragePool", "MaxPool")
@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET"])
def test_conv_forms(tmp_path: os.PathLike[str], rng: np.random.Generator, auto_pad: str) -> None:
    kw = {"auto_pad": auto_pad} if auto_pad != "NOTSET" else {"pads": [1, 0, 2, 1]}
    inits = {
        "w": randn(rng, 6, 3, 3, 4),
        "b": randn(rng, 6),
        "dw": randn(rng, 6, 1, 3, 3),
        "s": rng.uniform(0.5, 1.5, 6).astype(np.float32),
        "bb": randn(rng, 6),
        "mean": randn(rng, 6),
        "var": rng.uniform(0.5, 1.5, 6).astype(np.float32),
        "w1": randn(rng, 4, 6, 3),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[2, 2], **kw),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("BatchNormalization", ["r", "s", "bb", "mean", "var"], ["bn"], epsilon=1e-3),
        helper.make_node("Conv", ["bn", "dw"], ["d"], group=6, pads=[1, 1, 1, 1], dilations=[1, 1]),
        helper.make_node(
            "AveragePool", ["d"], ["ap"], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1]
        ),
        helper.make_node("MaxPool", ["ap"], ["y"], kernel_shape=[3, 2], strides=[2, 1], **kw),
        # Conv1d on [N, C, L]
        helper.make_node("Conv", ["z", "w1"], ["y1"], pads=[1, 1]),
    ]
    model = make(nodes, {"x": [1, 3, 11, 10], "z": [2, 6, 9]}, ["y", "y1"], 13, inits)
    _, dst = run_both(tmp_path, model, {"x": randn(rng, 1, 3, 11, 10), "z": randn(rng, 2, 6, 9)})
    ops = ops_of(dst)
    assert "BatchNormalization" in ops  # after a ReLU it cannot be folded into the conv


@requires_ops("Conv", "ConvTranspose")
@pytest.mark.parametrize("variant", ["pads", "output_shape", "groups"])
def test_conv_transpose(tmp_path: os.PathLike[str], rng: np.random.Generator, variant: str) -> None:
    groups = 2 if variant == "groups" else 1
    inits = {"w": randn(rng, 4, 6 // groups, 3, 3), "b": randn(rng, 6)}
    if variant == "output_shape":
        kw = {"strides": [2, 2], "output_shape": [12, 13]}
    else:
        kw = {"strides": [2, 1], "pads": [1, 0, 1, 1], "output_padding": [1, 0], "group": groups}
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w", "b"], ["t"], **kw),
        helper.make_node("Sigmoid", ["t"], ["y"]),
    ]
    model = make(nodes, {"x": [1, 4, 6, 6]}, ["y"], 13, inits)
    _, dst = run_both(tmp_path, model, {"x": randn(rng, 1, 4, 6, 6)})
    assert ops_of(dst) == ["ConvTranspose"]


@requires_ops("Conv")
def test_storage_options(tmp_path: os.PathLike[str], rng: np.random.Generator) -> None:
    w = randn(rng, 8, 4, 3, 3)
    w[rng.random(w.shape) < 0.8] = 0.0
    model = make(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        {"x": [1, 4, 9, 9]},
        ["y"],
        13,
        {"w": w},
    )
    x = randn(rng, 1, 4, 9, 9)
    for storage, want in (("auto", "csr"), ("dense", "dense"), ("csr", "csr")):
        src, dst = os.path.join(tmp_path, "m.onnx"), os.path.join(tmp_path, f"{storage}.spr")
        onnx.save(model, src)
        sparsert.convert(src, dst, storage=storage, verify=True)
        f = spr.read(dst)
        assert [t.storage for t in f.tensors] == [want]
        want_y = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.testing.assert_allclose(sparsert.load(dst).run(x), want_y, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------- errors


def test_unsupported_ops_listed_once(tmp_path: os.PathLike[str]) -> None:
    nodes = [
        helper.make_node("Hardmax", ["x"], ["a"], name="hardmax_first"),
        helper.make_node("Hardmax", ["a"], ["b"], name="hardmax_second"),
        helper.make_node("Shrink", ["b"], ["c"], name="the_shrink"),
        helper.make_node("Relu", ["c"], ["d"]),
        helper.make_node("Pow", ["d", "p"], ["y"], name="cube"),
    ]
    model = make(nodes, {"x": [2, 3]}, ["y"], 13, {"p": np.array(3.0, np.float32)})
    with pytest.raises(sparsert.UnsupportedError) as err:
        convert_model(model)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    # every unsupported op once, with its first node; supported ones (Relu, Pow) not at all
    assert "Hardmax (first node 'hardmax_first')" in msg and "Shrink (first node 'the_shrink')" in msg
    assert "hardmax_second" not in msg and "cube" not in msg and "Relu" not in msg


def test_integer_input_and_constant_output(tmp_path: os.PathLike[str], rng: np.random.Generator) -> None:
    # integer inputs (token ids, indices) are typed inputs of the converted model
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("Cast", ["ids"], ["y"], to=FLOAT)],
            "g",
            [helper.make_tensor_value_info("ids", TensorProto.INT64, [2])],
            [helper.make_tensor_value_info("y", FLOAT, [2])],
        ),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = _ir_version(13)
    ids = rng.integers(-1000, 1000, size=2).astype(np.int64)
    m, _ = run_both(tmp_path, model, {"ids": ids})
    assert m.inputs[0].dtype == "int64"
    with pytest.raises(ValueError, match="dtype float32, expected int64"):
        m.run(ids.astype(np.float32))
    # a type the runtime has no kernels for is refused by name
    f16 = helper.make_model(
        helper.make_graph(
            [helper.make_node("Cast", ["h"], ["y"], to=FLOAT)],
            "g",
            [helper.make_tensor_value_info("h", TensorProto.COMPLEX64, [2])],
            [helper.make_tensor_value_info("y", FLOAT, [2])],
        ),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    with pytest.raises(sparsert.UnsupportedError, match="'h'.*COMPLEX64"):
        convert_model(f16)
    const_out = make(
        [const_node("y", np.ones(3, np.float32)), helper.make_node("Relu", ["x"], ["z"])],
        {"x": [3]},
        ["y", "z"],
        13,
    )
    with pytest.raises(ValueError, match="constants"):
        convert_model(const_out)


def test_broken_files(tmp_path: os.PathLike[str], rng: np.random.Generator) -> None:
    model = make(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": [2, 64]}, ["y"], 13, {"w": randn(rng, 64, 64)}
    )
    data = model.SerializeToString()
    cases = {
        "garbage": bytes(rng.integers(0, 256, 4096, dtype=np.uint8)),
        "truncated_half": data[: len(data) // 2],
        "truncated_end": data[:-3],
        "empty": b"",
        "text": b"this is not an onnx model\n" * 10,
    }
    for label, blob in cases.items():
        src = os.path.join(tmp_path, f"{label}.onnx")
        with open(src, "wb") as fh:
            fh.write(blob)
        dst = os.path.join(tmp_path, f"{label}.spr")
        with pytest.raises(sparsert.FormatError) as err:
            sparsert.convert(src, dst)
        assert str(err.value), label
        assert not os.path.exists(dst), label
    with pytest.raises(FileNotFoundError):
        sparsert.convert(os.path.join(tmp_path, "nope.onnx"), os.path.join(tmp_path, "x.spr"))
    with pytest.raises(TypeError):
        convert_model(b"not a model")  # type: ignore[arg-type]


def test_bad_arguments(rng: np.random.Generator) -> None:
    model = make(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": [2, 4]}, ["y"], 13, {"w": randn(rng, 4, 3)}
    )
    with pytest.raises(ValueError, match="storage"):
        convert_model(model, storage="sparse")
    with pytest.raises(ValueError, match="sparsity"):
        convert_model(model, prune={"method": "magnitude", "sparsity": 1.5})
    with pytest.raises(ValueError, match="method"):
        convert_model(model, prune={"method": "random", "sparsity": 0.5})


def test_parse_helpers() -> None:
    assert parse_prune_spec("magnitude:0.9") == {
        "method": "magnitude",
        "sparsity": 0.9,
        "skip_first": True,
        "skip_depthwise": True,
        "block": (1, 1),
    }
    assert parse_prune_spec("magnitude:0.5:skip_first=0")["skip_first"] is False
    assert parse_prune_spec("magnitude:0.8:block=4x1")["block"] == (4, 1)
    for bad in ("magnitude", "magnitude:abc", "magnitude:1.2", "random:0.5", "magnitude:0.5:foo=1", "",
                "magnitude:0.5:block=0x4", "magnitude:0.5:block=4", "magnitude:0.5:block=65x1"):
        with pytest.raises(ValueError):
            parse_prune_spec(bad)
    assert parse_input_shape("x=1,3,224,224") == ("x", (1, 3, 224, 224))
    assert parse_input_shape("input:0=2,8") == ("input:0", (2, 8))
    for bad in ("x", "=1,2", "x=1,a", "x=0,3", "x="):
        with pytest.raises(ValueError):
            parse_input_shape(bad)


def test_prune_linear_warns_and_keeps_running(tmp_path: os.PathLike[str], rng: np.random.Generator) -> None:
    model = make(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        {"x": [3, 32]},
        ["y"],
        13,
        {"w": randn(rng, 32, 40)},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b = convert_model(model, prune=parse_prune_spec("magnitude:0.8"))
    assert any("fine-tuning" in str(w.message) for w in caught)
    f = b.build()
    w = f.tensors[0]
    assert w.storage == "csr" and abs(w.sparsity - 0.8) < 0.01
    # the kept weights are the largest-magnitude ones
    dense = w.to_dense()
    orig = numpy_helper.to_array(model.graph.initializer[0]).T
    assert np.abs(orig[dense == 0]).max() <= np.abs(orig[dense != 0]).min()
    y = b.load().run(randn(rng, 3, 32))
    assert y.shape == (3, 40)


@requires_ops("Conv", "Transpose")
@pytest.mark.parametrize("opset", [9, 13])
def test_tf2onnx_style_nhwc_pad_conv(
    tmp_path: os.PathLike[str], rng: np.random.Generator, opset: int
) -> None:
    """NHWC input, Transpose to NCHW, explicit zero Pad folded into the Conv, Transpose back."""
    pads = [0, 0, 1, 2, 0, 0, 2, 1]
    inits: dict[str, np.ndarray] = {"w": randn(rng, 5, 3, 3, 3), "b": randn(rng, 5)}
    if opset < 11:
        pad = helper.make_node("Pad", ["xt"], ["xp"], pads=pads, mode="constant", value=0.0)
    else:
        inits["pads"] = np.array(pads, dtype=np.int64)
        pad = helper.make_node("Pad", ["xt", "pads"], ["xp"], mode="constant")
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
        pad,
        helper.make_node("Conv", ["xp", "w", "b"], ["c"], strides=[2, 2], pads=[1, 0, 0, 0]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 3, 1]),
    ]
    model = make(nodes, {"x": [2, 9, 8, 3]}, ["y"], opset, inits)
    _, dst = run_both(tmp_path, model, {"x": randn(rng, 2, 9, 8, 3)})
    conv = [n for n in sparsert.load(dst).nodes if n.op_type == "Conv"]
    assert conv[0].attrs["pads"] == [2, 2, 2, 1] and conv[0].attrs["activation"] == "relu"


def test_legacy_broadcast_opset6(tmp_path: os.PathLike[str], rng: np.random.Generator) -> None:
    # opset < 7: Add/Mul with broadcast=1 and axis line B up with A from `axis` on
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["m"], broadcast=1, axis=1),
        helper.make_node("Add", ["m", "b"], ["y"], broadcast=1),
    ]
    inits = {"s": randn(rng, 3), "b": randn(rng, 5)}
    model = make(nodes, {"x": [2, 3, 4, 5]}, ["y"], 6, inits)
    src, dst = os.path.join(tmp_path, "m.onnx"), os.path.join(tmp_path, "m.spr")
    onnx.save(model, src)
    sparsert.convert(src, dst)
    x = randn(rng, 2, 3, 4, 5)
    want = x * inits["s"][:, None, None] + inits["b"]  # numpy reference: onnxruntime has no Mul-6 kernel
    np.testing.assert_allclose(sparsert.load(dst).run(x), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shapes", [((5,), (5,)), ((5,), (5, 3)), ((2, 4, 5), (5,)), ((2, 4, 5), (3, 5, 6)),
                                    ((1, 0, 5), (5, 2))])
def test_matmul_activation_operands_numpy_rules(
    tmp_path: os.PathLike[str], rng: np.random.Generator, shapes: tuple
) -> None:
    a_shape, b_shape = shapes
    if len(a_shape) == 3 and len(b_shape) == 3:
        a_shape = (3,) + a_shape[1:]
    model = make([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": list(a_shape), "b": list(b_shape)},
                 ["y"], 13)
    run_both(tmp_path, model, {"a": randn(rng, *a_shape), "b": randn(rng, *b_shape)})


def test_scalar_tensors_stay_scalars(tmp_path: os.PathLike[str], rng: np.random.Generator) -> None:
    # a 0-d input, a 0-d constant and a 0-d output keep rank 0 through convert, save and run
    nodes = [helper.make_node("Mul", ["s", "k"], ["y"])]
    model = make(nodes, {"s": []}, ["y"], 13, {"k": np.array(2.5, np.float32)})
    s = np.array(rng.standard_normal(), dtype=np.float32)
    m, _ = run_both(tmp_path, model, {"s": s})
    assert m.inputs[0].shape == () and m.run(s).shape == ()
