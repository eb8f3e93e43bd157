"""Conv2d, ConvTranspose2d and BatchNorm against torch.nn.functional.

Random shapes come from a printed seed (SPARSERT_TEST_SEED overrides it).
Tolerance: max |y - ref| <= 1e-4 * max(|ref|) (+1e-6 absolute, for all-zero outputs).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sparsert

SEED = int(os.environ.get("SPARSERT_TEST_SEED", "1234"))
RTOL = 1e-4

ACTIVATIONS: dict[str, Any] = {
    "none": lambda t: t,
    "relu": F.relu,
    "relu6": F.relu6,
    "leaky_relu": lambda t: F.leaky_relu(t, 0.1),
    "sigmoid": torch.sigmoid,
    "hardsigmoid": F.hardsigmoid,
    "hardswish": F.hardswish,
    "silu": F.silu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "clip": lambda t: torch.clamp(t, -0.5, 0.7),
}
ACT_PARAMS = {"leaky_relu": [0.1], "hardsigmoid": [1.0 / 6.0, 0.5], "clip": [-0.5, 0.7]}


def check(y: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert y.shape == ref.shape, f"{what}: shape {y.shape} != {ref.shape}"
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(y - ref))) if ref.size else 0.0
    assert np.all(np.isfinite(y)), f"{what}: non-finite output"
    assert err <= RTOL * scale + 1e-6, f"{what}: max error {err:.3g} vs max |ref| {scale:.3g}"


def sparse_weight(rng: np.random.Generator, shape: tuple[int, ...], sparsity: float) -> np.ndarray:
    w = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
    if sparsity > 0:
        w[rng.random(shape) < sparsity] = 0.0
    if sparsity >= 1.0:
        w[...] = 0.0
    return w


def run_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, *, stride=(1, 1), pads=(0, 0, 0, 0),
             dilation=(1, 1), groups=1, storage="dense", act="none", residual: np.ndarray | None = None,
             threads: int = 1, **options: Any) -> np.ndarray:
    g = sparsert.GraphBuilder("conv")
    xi = g.input("x", x.shape)
    ins = [xi, g.constant("w", w, storage=storage), g.constant("b", b) if b is not None else None]
    if residual is not None:
        ins.append(g.input("r", residual.shape))
    attrs: dict[str, Any] = {"strides": list(stride), "pads": list(pads), "dilations": list(dilation),
                             "group": groups, "activation": act}
    if act in ACT_PARAMS:
        attrs["activation_params"] = ACT_PARAMS[act]
    g.output(g.node("Conv", ins, attrs), "y")
    m = g.load(threads=threads, **options)
    return m.run([x] if residual is None else [x, residual])


def torch_conv(x, w, b, *, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1, act="none",
               residual=None) -> np.ndarray:
    t = F.pad(torch.from_numpy(x), (pads[1], pads[3], pads[0], pads[2]))
    y = F.conv2d(t, torch.from_numpy(w), None if b is None else torch.from_numpy(b), stride, 0, dilation,
                 groups)
    if residual is not None:
        y = y + torch.from_numpy(residual)
    return ACTIVATIONS[act](y).numpy()


def random_case(rng: np.random.Generator) -> dict[str, Any]:
    groups = int(rng.choice([1, 1, 1, 2, 3]))
    depthwise = rng.random() < 0.2
    cin_g = 1 if depthwise else int(rng.integers(1, 7))
    cout_g = 1 if depthwise else int(rng.integers(1, 7))
    if depthwise:
        groups = int(rng.integers(2, 20))
    kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pads = tuple(int(v) for v in rng.integers(0, 3, size=4))
    span_h = dilation[0] * (kh - 1) + 1 - pads[0] - pads[2]
    span_w = dilation[1] * (kw - 1) + 1 - pads[1] - pads[3]
    h = max(1, span_h) + int(rng.integers(0, 12))
    w = max(1, span_w) + int(rng.integers(0, 12))
    return dict(batch=int(rng.choice([1, 3])), cin=cin_g * groups, cout=cout_g * groups, k=(kh, kw),
                hw=(h, w), stride=stride, pads=pads, dilation=dilation, groups=groups,
                sparsity=float(rng.choice([0.0, 0.5, 0.9, 0.99, 1.0])),
                storage=str(rng.choice(["dense", "csr"])), act=str(rng.choice(list(ACTIVATIONS))),
                residual=bool(rng.random() < 0.3), bias=bool(rng.random() < 0.8))


def run_case(c: dict[str, Any], seed: int, threads: int = 1, **options: Any) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((c["batch"], c["cin"], *c["hw"])).astype(np.float32)
    w = sparse_weight(rng, (c["cout"], c["cin"] // c["groups"], *c["k"]), c["sparsity"])
    b = rng.standard_normal(c["cout"]).astype(np.float32) if c["bias"] else None
    kwargs = dict(stride=c["stride"], pads=c["pads"], dilation=c["dilation"], groups=c["groups"],
                  act=c["act"])
    ref0 = torch_conv(x, w, b, **kwargs)
    r = rng.standard_normal(ref0.shape).astype(np.float32) if c["residual"] else None
    ref = torch_conv(x, w, b, residual=r, **kwargs)
    y = run_conv(x, w, b, storage=c["storage"], residual=r, threads=threads, **kwargs, **options)
    check(y, ref, f"seed {seed} case {c}")


def path_options(path: str) -> dict[str, str]:
    """Load options forcing a sparse conv path; forced paths run the sparse kernels whatever the
    density (else the per-layer choice decides)."""
    return {"conv_sparse_path": path, "layer_kernel": "auto" if path == "auto" else "sparse"}


def test_conv2d_random_shapes() -> None:
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    for i in range(60):
        c = random_case(rng)
        path = ["direct", "im2col", "auto"][i % 3]
        run_case(c, SEED * 1000 + i, threads=1 + i % 2, **path_options(path))


EDGE_CASES = [
    # 1x1 spatial input, 3x3 kernel with padding
    dict(batch=1, cin=5, cout=7, k=(3, 3), hw=(1, 1), stride=(1, 1), pads=(1, 1, 1, 1)),
    # channels not a multiple of 16, odd sizes
    dict(batch=3, cin=17, cout=19, k=(3, 3), hw=(13, 11), stride=(1, 1), pads=(1, 1, 1, 1)),
    # stride larger than the kernel
    dict(batch=1, cin=4, cout=6, k=(2, 2), hw=(15, 17), stride=(3, 4), pads=(0, 0, 0, 0)),
    # asymmetric pads, dilation
    dict(batch=1, cin=6, cout=5, k=(3, 5), hw=(12, 14), stride=(1, 1), pads=(0, 2, 3, 1), dilation=(2, 3)),
    # 1x1 pointwise, grouped
    dict(batch=3, cin=24, cout=36, k=(1, 1), hw=(9, 7), stride=(1, 1), pads=(0, 0, 0, 0), groups=4),
    # 1x1 strided
    dict(batch=1, cin=8, cout=16, k=(1, 1), hw=(9, 9), stride=(2, 2), pads=(0, 0, 0, 0)),
    # depthwise 3x3 stride 2, wide rows (vector + tail)
    dict(batch=1, cin=18, cout=18, k=(3, 3), hw=(20, 45), stride=(2, 2), pads=(1, 1, 1, 1), groups=18),
    # depthwise 5x5 dilation 2, stride 1, no pad
    dict(batch=3, cin=7, cout=7, k=(5, 5), hw=(19, 37), stride=(1, 1), pads=(0, 0, 0, 0), dilation=(2, 2),
         groups=7),
    # grouped KxK
    dict(batch=1, cin=12, cout=18, k=(3, 3), hw=(10, 10), stride=(1, 2), pads=(1, 0, 1, 2), groups=3),
    # ResNet-like (small)
    dict(batch=1, cin=32, cout=32, k=(3, 3), hw=(28, 28), stride=(1, 1), pads=(1, 1, 1, 1)),
    # large K (spmm K blocking on the im2col matrix)
    dict(batch=1, cin=160, cout=20, k=(3, 3), hw=(8, 8), stride=(1, 1), pads=(1, 1, 1, 1)),
    # 7x7 stride-2 stem, wide rows (the vectorised stride-2 im2col gather and its tail)
    dict(batch=1, cin=3, cout=8, k=(7, 7), hw=(21, 93), stride=(2, 2), pads=(3, 3, 3, 3)),
    # DenseNet's 3x3 at 14x14 and 7x7 (whole-row im2col), stride 3 with pads wider than a row tap
    dict(batch=1, cin=40, cout=12, k=(3, 3), hw=(14, 14), stride=(1, 1), pads=(1, 1, 1, 1)),
    dict(batch=2, cin=9, cout=5, k=(3, 3), hw=(7, 7), stride=(1, 1), pads=(1, 1, 1, 1)),
    dict(batch=1, cin=4, cout=6, k=(5, 4), hw=(11, 29), stride=(3, 3), pads=(2, 3, 1, 2)),
]


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 1.0])
@pytest.mark.parametrize(("storage", "path"), [("dense", "auto"), ("csr", "direct"), ("csr", "im2col")])
def test_conv2d_edge_cases(sparsity: float, storage: str, path: str) -> None:
    for i, base in enumerate(EDGE_CASES):
        c = dict(dilation=(1, 1), groups=1, act="relu" if i % 2 else "none", residual=i % 3 == 0, bias=True)
        c.update(base)
        c.update(sparsity=sparsity, storage=storage)
        run_case(c, SEED + i, threads=2, **path_options(path))


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_conv2d_fused_activations(act: str) -> None:
    c = dict(batch=1, cin=8, cout=9, k=(3, 3), hw=(7, 9), stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1),
             groups=1, sparsity=0.5, storage="csr", act=act, residual=True, bias=True)
    run_case(c, SEED)


@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (5, 1), (5, 2)])
@pytest.mark.parametrize("act", ["none", "relu", "relu6", "clip", "hardswish"])
def test_depthwise_specialised(k: int, stride: int, act: str) -> None:
    """The 3x3 / 5x5, stride 1 / 2 depthwise kernels (clamp activations fused in the kernel,
    others and residuals in the epilogue) on widths around the vector widths and odd heights."""
    for i, (h, w, pads) in enumerate([(1, 1, (1, 1, 1, 1)), (7, 17, (k // 2,) * 4), (10, 33, (0, 1, 2, 1)),
                                      (5, 16, (2, 0, 1, 2))]):
        c = dict(batch=2, cin=5, cout=5, k=(k, k), hw=(max(h, k), max(w, k)), stride=(stride, stride),
                 pads=pads, dilation=(1, 1), groups=5, sparsity=0.0, storage="dense", act=act,
                 residual=i % 2 == 1, bias=True)
        run_case(c, SEED + 40 + i)


def winograd_cases(rng: np.random.Generator, count: int) -> list[dict[str, Any]]:
    """Random 3x3 stride-1 convs (the shapes Winograd F(4x4, 3x3) takes): sizes around the 4x4 tile
    and the 16-tile chunk, asymmetric pads, every activation, residuals, batch 1 and 3."""
    cases = []
    for _ in range(count):
        pads = tuple(int(v) for v in rng.integers(0, 3, size=4))
        h = max(1, 3 - pads[0] - pads[2]) + int(rng.integers(0, 23))
        w = max(1, 3 - pads[1] - pads[3]) + int(rng.integers(0, 75))
        cases.append(dict(batch=int(rng.choice([1, 3])), cin=int(rng.integers(1, 40)),
                          cout=int(rng.integers(1, 40)),
                          k=(3, 3), hw=(h, w), stride=(1, 1), pads=pads, dilation=(1, 1), groups=1,
                          sparsity=float(rng.choice([0.0, 0.5, 1.0])), storage="dense",
                          act=str(rng.choice(list(ACTIVATIONS))), residual=bool(rng.random() < 0.4),
                          bias=bool(rng.random() < 0.8)))
    return cases


@pytest.mark.parametrize("cout,cin,hw", [(24, 144, (56, 56)), (960, 160, (7, 7)), (20, 36, (3, 50)),
                                         (3, 8, (1, 17))])
@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_conv1x1_threads_split_rows_or_columns(cout: int, cin: int, hw: tuple[int, int],
                                               storage: str) -> None:
    # 2 threads split a 1x1 conv by output columns when the input is the larger
    # operand (MobileNet's projections) and by rows when the weight is: both
    # splits, and the column tails, against PyTorch.
    rng = np.random.default_rng(SEED + cout)
    x = rng.standard_normal((1, cin, *hw)).astype(np.float32)
    w = sparse_weight(rng, (cout, cin, 1, 1), 0.0 if storage == "dense" else 0.8)
    b = rng.standard_normal(cout).astype(np.float32)
    r = rng.standard_normal((1, cout, *hw)).astype(np.float32)
    ref = torch_conv(x, w, b, act="relu6", residual=r)
    for threads in (1, 2):
        y = run_conv(x, w, b, storage=storage, act="relu6", residual=r, threads=threads,
                     layer_kernel="sparse" if storage == "csr" else "dense")
        check(y, ref, f"1x1 {cout}x{cin} {hw} {storage} threads={threads}")


def test_conv2d_winograd_random_shapes() -> None:
    """The Winograd path (forced) against PyTorch, same tolerance as every conv (1e-4 of max |ref|):
    F(4x4, 3x3) in float32 stays within it (measured max 5e-6 relative on 64 -> 64 at 56x56)."""
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED + 77)
    for i, c in enumerate(winograd_cases(rng, 40)):
        run_case(c, SEED * 1000 + 500 + i, threads=1 + i % 2, conv_dense_path="winograd",
                 layer_kernel="dense")


@pytest.mark.parametrize("hw", [(1, 1), (4, 4), (5, 9), (64, 67)])
def test_conv2d_winograd_edges(hw: tuple[int, int]) -> None:
    """One tile, exact tiles, partial tiles, and a map of several tile-row blocks (the block loop)."""
    c = dict(batch=2, cin=48, cout=40, k=(3, 3), hw=hw, stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1),
             groups=1, sparsity=0.0, storage="dense", act="relu", residual=True, bias=True)
    run_case(c, SEED + 3, threads=2, conv_dense_path="winograd")


def test_conv2d_winograd_choice() -> None:
    """Auto takes Winograd for dense 3x3 stride-1 layers with enough tiles and channels, im2col for
    small maps, few channels, strides, dilations and groups; summary() names the kernel; a zero
    batch runs."""
    rng = np.random.default_rng(SEED)

    def kernel(cin: int, cout: int, hw: int, **attrs: Any) -> str:
        g = sparsert.GraphBuilder("conv")
        x = g.input("x", (1, cin, hw, hw))
        w = rng.standard_normal((cout, cin // attrs.get("group", 1), 3, 3)).astype(np.float32)
        g.output(g.node("Conv", [x, g.constant("w", w)], {"pads": [1, 1, 1, 1], **attrs}), "y")
        return g.load(threads=1).summary()[0]["kernel"]

    assert kernel(64, 64, 56).startswith("winograd_f4x4_3x3_")
    assert kernel(256, 256, 14).startswith("winograd_f4x4_3x3_")
    assert kernel(512, 512, 7).startswith("im2col+")  # 4 tiles: the 4x weights are not reused
    assert kernel(16, 16, 112).startswith("im2col+")  # few channels: the transforms dominate
    assert kernel(64, 64, 56, strides=[2, 2]).startswith("im2col+")
    assert kernel(64, 64, 56, dilations=[2, 2]).startswith("im2col+")
    assert kernel(64, 64, 56, group=2).startswith("im2col+")
    g = sparsert.GraphBuilder("conv")
    x = g.input("x", (-1, 32, 20, 20))
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    g.output(g.node("Conv", [x, g.constant("w", w)], {"pads": [1, 1, 1, 1]}), "y")
    m = g.load(threads=2, conv_dense_path="winograd")
    assert m.run(np.zeros((0, 32, 20, 20), np.float32)).shape == (0, 32, 20, 20)
    xs = rng.standard_normal((2, 32, 20, 20)).astype(np.float32)
    check(m.run(xs), torch_conv(xs, w, None, pads=(1, 1, 1, 1)), "winograd batch 2")
    tuned = g.load(threads=1, tune=True)
    check(tuned.run(xs), torch_conv(xs, w, None, pads=(1, 1, 1, 1)), "winograd tuned")
    # tune times every candidate on this machine: a dense weight may even run its sparse copy
    # when that measures faster at this small size
    assert tuned.summary()[0]["kernel"].startswith(("im2col+", "winograd_f4x4_3x3_", "conv_sparse_direct_"))
    with pytest.raises(ValueError, match="conv_dense_path"):
        g.load(conv_dense_path="fft")


def test_conv2d_residual_broadcast() -> None:
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((2, 4, 1, 1)).astype(np.float32)
    w = rng.standard_normal((6, 4, 1, 1)).astype(np.float32)
    r = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)  # the conv output is broadcast up
    y = run_conv(x, w, None, act="relu", residual=r)
    ref = torch_conv(x, w, None, act="relu", residual=r)
    check(y, ref, "broadcast residual")
    r2 = rng.standard_normal((6, 1, 1)).astype(np.float32)
    x2 = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    check(run_conv(x2, w, None, residual=r2), torch_conv(x2, w, None, residual=r2), "broadcast residual 2")


def test_conv2d_errors() -> None:
    x = np.zeros((1, 3, 4, 4), np.float32)
    w = np.ones((4, 3, 5, 5), np.float32)
    with pytest.raises(Exception, match="smaller than the dilated"):
        run_conv(x, w, None)
    with pytest.raises(Exception, match="channels"):
        run_conv(np.zeros((1, 2, 8, 8), np.float32), w, None)
    with pytest.raises(Exception, match="group"):
        run_conv(np.zeros((1, 6, 8, 8), np.float32), np.ones((5, 3, 1, 1), np.float32), None, groups=2)
    with pytest.raises(Exception, match="pads"):
        run_conv(np.zeros((1, 3, 8, 8), np.float32), w, None, pads=(1, 1))


def test_conv2d_summary() -> None:
    rng = np.random.default_rng(SEED)
    w = sparse_weight(rng, (16, 8, 3, 3), 0.9)
    g = sparsert.GraphBuilder("conv")
    x = g.input("x", (2, 8, 10, 10))
    g.output(g.node("Conv", [x, g.constant("w", w, storage="csr")], {"pads": [1, 1, 1, 1]}), "y")
    m = g.load(threads=1)
    row = m.summary([(2, 8, 10, 10)])[0]
    # stride 1: the auto rule picks the direct sparse kernel whatever the map size
    assert row["kernel"].startswith("conv_sparse_direct_f32_"), row["kernel"]
    nnz = int(np.count_nonzero(w))
    assert row["weight_storage"] == "csr" and row["weight_nnz"] == nnz
    assert row["flops"] == 2 * nnz * 100 * 2 and row["dense_flops"] == 2 * w.size * 100 * 2
    assert row["kernel"]


def conv_model(w: np.ndarray, x_shape: tuple[int, ...], storage: str, stride: int = 1, pad: int = 1,
               tune: bool = False, **options: Any) -> Any:
    g = sparsert.GraphBuilder("conv")
    x = g.input("x", (-1, *x_shape[1:]))
    attrs = {"pads": [pad] * 4, "strides": [stride, stride]}
    g.output(g.node("Conv", [x, g.constant("w", w, storage=storage)], attrs), "y")
    return g.load(threads=1, tune=tune, **options)


# (weight shape, input shape, stride, pad, sparse path when sparse wins)
CHOICE_LAYERS = [
    ((32, 16, 3, 3), (1, 16, 30, 30), 1, 1, "conv_sparse_direct_f32_"),
    ((32, 16, 3, 3), (1, 16, 15, 15), 2, 1, "conv_sparse_direct_f32_"),  # phase-split input
    ((32, 16, 3, 3), (1, 16, 15, 15), 3, 1, "im2col+spmm_f32_"),  # strides > 2
    ((48, 32, 1, 1), (1, 32, 12, 12), 1, 0, "spmm_f32_"),
]


@pytest.mark.parametrize("layer", CHOICE_LAYERS, ids=["direct", "direct_stride2", "im2col", "pointwise"])
@pytest.mark.parametrize("storage", ["dense", "csr"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.95, 1.0])
def test_conv2d_per_layer_kernel_choice(layer: tuple[Any, ...], storage: str, sparsity: float) -> None:
    # the cost model: sparse kernels at density <= 0.3 (conv2d.cc), dense GEMM above, whatever the storage
    w_shape, x_shape, stride, pad, sparse_kernel = layer
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    w = sparse_weight(rng, w_shape, sparsity)
    x = rng.standard_normal(x_shape).astype(np.float32)
    ref = torch_conv(x, w, None, stride=(stride, stride), pads=(pad,) * 4)
    m = conv_model(w, x_shape, storage, stride, pad)
    check(m.run(x), ref, f"{storage} sparsity {sparsity}")
    row = m.summary([x_shape])[0]
    want_sparse = np.count_nonzero(w) / w.size <= 0.3
    if want_sparse:
        assert row["kernel"].startswith(sparse_kernel), row["kernel"]
        assert row["flops"] == 2 * np.count_nonzero(w) * ref.shape[2] * ref.shape[3]
    else:
        assert "gemm_f32_" in row["kernel"], row["kernel"]
        assert row["flops"] == row["dense_flops"]
    copied = {"dense": " (sparse copy of dense)", "csr": " (densified)"}[storage]
    assert row["kernel"].endswith(copied) == (want_sparse == (storage == "dense")), row["kernel"]
    assert row["weight_storage"] == storage and row["weight_nnz"] == (
        np.count_nonzero(w) if storage == "csr" else w.size)
    # tune: both kernels timed on the first plan of each shape, then cached; results agree
    mt = conv_model(w, x_shape, storage, stride, pad, tune=True)
    check(mt.run(x), ref, f"tuned {storage} sparsity {sparsity}")
    kernel = mt.summary([x_shape])[0]["kernel"]
    assert kernel.startswith(sparse_kernel) or "gemm_f32_" in kernel, kernel
    x2 = rng.standard_normal((2, *x_shape[1:])).astype(np.float32)
    check(mt.run(x2), torch_conv(x2, w, None, stride=(stride, stride), pads=(pad,) * 4), "tuned batch 2")
    assert mt.summary([x_shape])[0]["kernel"] == kernel  # cached per shape


def test_conv2d_forced_kernel_family() -> None:
    rng = np.random.default_rng(SEED + 7)
    w = sparse_weight(rng, (24, 8, 3, 3), 0.5)
    x = rng.standard_normal((1, 8, 21, 21)).astype(np.float32)
    ref = torch_conv(x, w, None, pads=(1, 1, 1, 1))
    for family, name in [("sparse", "conv_sparse_direct_f32_"), ("dense", "im2col+gemm_f32_")]:
        for storage in ["dense", "csr"]:
            m = conv_model(w, x.shape, storage, layer_kernel=family)
            check(m.run(x), ref, f"{family} {storage}")
            assert m.summary([x.shape])[0]["kernel"].startswith(name)


@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_conv_transpose2d(storage: str) -> None:
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED + 7)
    for i in range(25):
        groups = int(rng.choice([1, 1, 2, 3]))
        cin, cout_g = int(rng.integers(1, 6)) * groups, int(rng.integers(1, 6))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        out_pad = (int(rng.integers(0, max(stride[0], dilation[0]))),
                   int(rng.integers(0, max(stride[1], dilation[1]))))
        pads = (int(rng.integers(0, kh)), int(rng.integers(0, kw)))  # torch: symmetric padding
        h, w_ = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        batch = int(rng.choice([1, 3]))
        x = rng.standard_normal((batch, cin, h, w_)).astype(np.float32)
        wt = sparse_weight(rng, (cin, cout_g, kh, kw), float(rng.choice([0.0, 0.5, 1.0])))
        b = rng.standard_normal(cout_g * groups).astype(np.float32)
        act = str(rng.choice(["none", "relu", "sigmoid"]))
        out_h = (h - 1) * stride[0] - 2 * pads[0] + dilation[0] * (kh - 1) + out_pad[0] + 1
        out_w = (w_ - 1) * stride[1] - 2 * pads[1] + dilation[1] * (kw - 1) + out_pad[1] + 1
        if min(out_h, out_w) < 1:
            continue
        ref_t = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b), stride,
                                   pads, out_pad, groups, dilation)
        ref = ACTIVATIONS[act](ref_t).numpy()
        g = sparsert.GraphBuilder("convt")
        xi = g.input("x", x.shape)
        y = g.node("ConvTranspose", [xi, g.constant("w", wt, storage=storage), g.constant("b", b)],
                   {"strides": list(stride), "pads": [pads[0], pads[1], pads[0], pads[1]],
                    "dilations": list(dilation), "group": groups, "output_padding": list(out_pad),
                    "activation": act})
        g.output(y, "y")
        out = g.load(threads=1 + i % 2).run([x])
        check(out, ref, f"seed {SEED + 7} case {i}")


@pytest.mark.parametrize("shape", [(2, 5), (1, 3, 7), (3, 4, 5, 6), (2, 3, 2, 2, 2)])
def test_batchnorm(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(SEED)
    c = shape[1]
    x = rng.standard_normal(shape).astype(np.float32)
    scale, bias, mean = (rng.standard_normal(c).astype(np.float32) for _ in range(3))
    var = rng.random(c).astype(np.float32) + 0.1
    g = sparsert.GraphBuilder("bn")
    xi = g.input("x", shape)
    y = g.node("BatchNormalization", [xi, g.constant("s", scale), g.constant("b", bias), g.constant("m", mean),
                             g.constant("v", var)], {"epsilon": 1e-3})
    g.output(y, "y")
    out = g.load(threads=2).run([x])
    ref = F.batch_norm(torch.from_numpy(x), torch.from_numpy(mean), torch.from_numpy(var),
                       torch.from_numpy(scale), torch.from_numpy(bias), False, 0.0, 1e-3).numpy()
    check(out, ref, f"batchnorm {shape}")


@pytest.mark.parametrize(("op", "attrs", "act"), [("Relu", {}, F.relu), ("Sigmoid", {}, torch.sigmoid),
                                                   ("LeakyRelu", {"alpha": 0.2},
                                                    lambda t: F.leaky_relu(t, 0.2))])
def test_batchnorm_fused_activation(op: str, attrs: dict[str, Any], act: Any) -> None:
    """A BatchNorm no conv absorbs (pre-activation blocks: BN -> ReLU -> Conv after a concat) takes
    the activation that follows it: one node, one pass; a second reader keeps the BN output."""
    rng = np.random.default_rng(SEED)
    shape = (2, 5, 7, 3)
    x = rng.standard_normal(shape).astype(np.float32)
    scale, bias, mean = (rng.standard_normal(5).astype(np.float32) for _ in range(3))
    var = rng.random(5).astype(np.float32) + 0.1
    ref_bn = F.batch_norm(torch.from_numpy(x), torch.from_numpy(mean), torch.from_numpy(var),
                          torch.from_numpy(scale), torch.from_numpy(bias), False, 0.0, 1e-5)
    for second_reader in (False, True):
        g = sparsert.GraphBuilder("bn")
        xi = g.input("x", shape)
        y = g.node("BatchNormalization", [xi, g.constant("s", scale), g.constant("b", bias),
                                          g.constant("m", mean), g.constant("v", var)])
        g.output(g.node(op, [y], attrs), "y")
        if second_reader:
            g.output(y, "bn")
        m = g.load(threads=2)
        out = m.run([x])
        outs = out if second_reader else [out]
        check(outs[0], act(ref_bn).numpy(), f"batchnorm + {op}")
        if second_reader:
            check(outs[1], ref_bn.numpy(), "batchnorm output read twice")
        ops = [n.op_type for n in m.nodes]
        assert ops == (["BatchNormalization", op] if second_reader else ["BatchNormalization"]), ops
