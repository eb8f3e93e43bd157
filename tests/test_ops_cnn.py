"""The CNN / transformer op set (pool.cc, concat.cc, transpose.cc, resize.cc,
reduce.cc, layernorm.cc, matmul.cc) against torch.nn.functional, numpy and,
for the ONNX-only Resize modes, onnxruntime.

Shapes are random from the printed per-test seed (conftest.py) and include
odd sizes, 1x1 spatial maps, strides larger than the kernel, batch 1 and > 1.
Tolerance: elementwise |got - ref| <= 1e-5 + 1e-5 * |ref| (np.testing.assert_allclose
with atol = rtol = 1e-5), with the reference computed in float64 from the same
float32 inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sparsert

ATOL = 1e-5
RTOL = 1e-5


def assert_close(got: np.ndarray, ref: np.ndarray | torch.Tensor, what: str = "") -> None:
    if isinstance(ref, torch.Tensor):
        ref = ref.detach().numpy()
    assert got.dtype == np.float32
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL, err_msg=what)


def t64(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float64))


def single_op_model(
    op: str,
    x_shape: Sequence[int],
    attrs: dict[str, Any] | None = None,
    constants: Sequence[np.ndarray | None] = (),
    outputs: int = 1,
    threads: int | None = None,
    x_first: bool = True,
) -> sparsert.Model:
    """A model of one node: input x (plus constants) -> op -> output(s)."""
    b = sparsert.GraphBuilder(op.lower())
    x = b.input("x", x_shape)
    consts: list[str | None] = [
        None if c is None else b.constant(f"c{i}", c) for i, c in enumerate(constants)
    ]
    ins = [x, *consts] if x_first else [*consts, x]
    out = b.node(op, ins, attrs or {}, outputs=outputs)
    for o in (out,) if isinstance(out, str) else out:
        b.output(o)
    return b.load(threads=threads)


def randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------
# pooling


def random_pool_config(rng: np.random.Generator, dilation: bool) -> dict[str, Any]:
    while True:
        n = int(rng.choice([1, 1, 2, 3]))
        c = int(rng.integers(1, 6))
        h, w = (int(v) for v in rng.integers(1, 14, size=2))
        k = [int(v) for v in rng.integers(1, 5, size=2)]
        s = [int(v) for v in rng.integers(1, 6, size=2)]  # includes stride > kernel
        p = [int(rng.integers(0, kk // 2 + 1)) for kk in k]
        d = [int(v) for v in rng.integers(1, 4, size=2)] if dilation else [1, 1]
        ceil = bool(rng.integers(0, 2))
        if all(size + 2 * pp >= dd * (kk - 1) + 1 for size, pp, dd, kk in zip((h, w), p, d, k)):
            return dict(shape=(n, c, h, w), kernel=k, strides=s, pads=p, dilations=d, ceil_mode=ceil)


def test_maxpool_random_vs_torch(rng):
    for trial in range(40):
        cfg = random_pool_config(rng, dilation=True)
        x = randn(rng, *cfg["shape"])
        p = cfg["pads"]
        attrs = {
            "kernel_shape": cfg["kernel"],
            "strides": cfg["strides"],
            "pads": [p[0], p[1], p[0], p[1]],
            "dilations": cfg["dilations"],
            "ceil_mode": int(cfg["ceil_mode"]),
        }
        got = single_op_model("MaxPool", x.shape, attrs, threads=1 + trial % 2).run(x)
        ref = F.max_pool2d(
            t64(x), cfg["kernel"], cfg["strides"], p, cfg["dilations"], ceil_mode=cfg["ceil_mode"]
        )
        assert_close(got, ref, f"trial {trial}: {cfg}")


def test_avgpool_random_vs_torch(rng):
    for trial in range(48):
        cfg = random_pool_config(rng, dilation=False)
        include = trial % 2 == 0
        x = randn(rng, *cfg["shape"])
        p = cfg["pads"]
        attrs = {
            "kernel_shape": cfg["kernel"],
            "strides": cfg["strides"],
            "pads": [p[0], p[1], p[0], p[1]],
            "ceil_mode": int(cfg["ceil_mode"]),
            "count_include_pad": int(include),
        }
        got = single_op_model("AveragePool", x.shape, attrs, threads=1 + trial % 2).run(x)
        ref = F.avg_pool2d(
            t64(x), cfg["kernel"], cfg["strides"], p, ceil_mode=cfg["ceil_mode"], count_include_pad=include
        )
        assert_close(got, ref, f"trial {trial}: {cfg} count_include_pad={include}")


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool_wide_rows_vs_torch(rng, op):
    # Rows wide enough for the vectorised whole-window loops (16-lane bodies and
    # their tails) for each (stride, width) pair they are compiled for, and one
    # they are not (4, 4); NaN inside the vector body must still win a max.
    for k, s in [(2, 1), (3, 1), (5, 1), (2, 2), (3, 2), (3, 3), (4, 4)]:
        for w, pad, ceil in [(111, 0, 1), (112, 1, 0), (67, k // 2, 1), (40, 0, 0)]:
            x = randn(rng, 1, 3, 9, w)
            if op == "MaxPool":
                x[0, 1, 4, [w // 2, w // 2 + 3, 17]] = np.nan  # at every tap offset of some window
            attrs: dict[str, Any] = {"kernel_shape": [k, k], "strides": [s, s], "pads": [pad] * 4,
                                     "ceil_mode": ceil}
            if op == "AveragePool":
                attrs["count_include_pad"] = int(w % 2 == 0)
                ref = F.avg_pool2d(t64(x), k, s, pad, ceil_mode=bool(ceil), count_include_pad=w % 2 == 0)
            else:
                ref = F.max_pool2d(t64(x), k, s, pad, ceil_mode=bool(ceil))
            got = single_op_model(op, x.shape, attrs, threads=2).run(x)
            if op == "MaxPool":
                np.testing.assert_array_equal(np.isnan(got), np.isnan(ref.numpy()), f"k={k} s={s} w={w}")
                got, ref = np.nan_to_num(got), np.nan_to_num(ref.numpy())
            assert_close(got, ref, f"{op} k={k} s={s} w={w} pad={pad} ceil={ceil}")


def test_pool_ceil_mode_drops_window_starting_in_padding():
    # H = 5, k = 2, s = 2, pad 1: ceil gives 4 windows by the formula, but the
    # 4th would start at index 6 - 1 = 5 >= H + pad_top... torch keeps 3 (pad 1: 4? check below)
    for h, k, s, p in [(5, 2, 2, 1), (4, 3, 2, 1), (6, 3, 3, 1), (1, 2, 2, 1), (7, 2, 3, 0)]:
        x = np.arange(h * h, dtype=np.float32).reshape(1, 1, h, h) - 10.0
        for op in ("MaxPool", "AveragePool"):
            for include in (0, 1):
                attrs: dict[str, Any] = {"kernel_shape": [k, k], "strides": [s, s], "pads": [p] * 4, "ceil_mode": 1}
                if op == "AveragePool":
                    attrs["count_include_pad"] = include
                    ref = F.avg_pool2d(t64(x), k, s, p, ceil_mode=True, count_include_pad=bool(include))
                else:
                    ref = F.max_pool2d(t64(x), k, s, p, ceil_mode=True)
                got = single_op_model(op, x.shape, attrs).run(x)
                assert_close(got, ref, f"{op} h={h} k={k} s={s} p={p} include={include}")


def test_pool_asymmetric_pads(rng):
    # [top, left, bottom, right] against explicit padding then an unpadded torch pool
    for _ in range(16):
        n, c, h, w = 2, 3, int(rng.integers(3, 10)), int(rng.integers(3, 10))
        k = [3, 2]
        pads = [
            int(rng.integers(0, 3)),
            int(rng.integers(0, 2)),
            int(rng.integers(0, 3)),
            int(rng.integers(0, 2)),
        ]
        x = randn(rng, n, c, h, w)
        torch_pad = (pads[1], pads[3], pads[0], pads[2])  # left, right, top, bottom
        got = single_op_model("MaxPool", x.shape, {"kernel_shape": k, "strides": [2, 1], "pads": pads}).run(x)
        ref = F.max_pool2d(F.pad(t64(x), torch_pad, value=-np.inf), k, [2, 1])
        assert_close(got, ref, f"max pads={pads}")
        got = single_op_model(
            "AveragePool", x.shape, {"kernel_shape": k, "strides": [1, 2], "pads": pads, "count_include_pad": 1}
        ).run(x)
        ref = F.avg_pool2d(F.pad(t64(x), torch_pad, value=0.0), k, [1, 2])
        assert_close(got, ref, f"avg pads={pads}")


def test_maxpool_nan_propagates():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    got = single_op_model("MaxPool", x.shape, {"kernel_shape": [2, 2]}).run(x)
    ref = F.max_pool2d(torch.from_numpy(x), 2).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))


def test_pool_dynamic_batch(rng):
    m = single_op_model(
        "MaxPool", (-1, 4, 9, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    )
    for n in (1, 3):
        x = randn(rng, n, 4, 9, 9)
        assert_close(m.run(x), F.max_pool2d(t64(x), 3, 2, 1))


@pytest.mark.parametrize("shape", [(1, 3, 7, 5), (2, 4, 1, 1), (3, 2, 13), (2, 3, 2, 3, 4), (1, 64, 7, 7)])
def test_global_average_pool(rng, shape):
    x = randn(rng, *shape)
    got = single_op_model("GlobalAveragePool", shape).run(x)
    ref = x.astype(np.float64).mean(axis=tuple(range(2, len(shape))), keepdims=True)
    assert_close(got, ref, str(shape))


# ---------------------------------------------------------------------------
# Concat, Split


def test_concat_random(rng):
    for trial in range(30):
        rank = int(rng.integers(1, 5))
        base = [int(v) for v in rng.integers(1, 6, size=rank)]
        axis = int(rng.integers(-rank, rank))
        count = int(rng.integers(2, 5))
        parts = []
        for _ in range(count):
            s = list(base)
            s[axis] = int(rng.integers(1, 5))
            parts.append(randn(rng, *s))
        const_at = int(rng.integers(0, count)) if trial % 3 == 0 else -1
        b = sparsert.GraphBuilder("concat")
        names = []
        inputs = []
        for i, part in enumerate(parts):
            if i == const_at:
                names.append(b.constant(f"k{i}", part))
            else:
                names.append(b.input(f"x{i}", part.shape))
                inputs.append(part)
        b.output(b.node("Concat", names, {"axis": axis}))
        got = b.load(threads=1 + trial % 2).run(inputs)
        assert_close(got, np.concatenate(parts, axis=axis).astype(np.float64), f"trial {trial} axis {axis}")


@pytest.mark.parametrize("axis", [0, 1, 3])
def test_concat_large_blocks_split_across_threads(rng, axis):
    # blocks above 64 KiB are copied in pieces by both threads (odd byte counts, several blocks)
    shapes = [(2, 3, 97, 131), (2, 5, 97, 131), (2, 1, 97, 131)]
    if axis == 3:
        shapes = [(1, 2, 97, 131 * 70), (1, 2, 97, 13)]
    elif axis == 0:
        shapes = [(1, 3, 97, 131), (2, 3, 97, 131)]
    parts = [randn(rng, *s) for s in shapes]
    b = sparsert.GraphBuilder("concat")
    names = [b.input(f"x{i}", p.shape) for i, p in enumerate(parts)]
    b.output(b.node("Concat", names, {"axis": axis}))
    got = b.load(threads=2).run(parts)
    np.testing.assert_array_equal(got, np.concatenate(parts, axis=axis))


def test_split_random(rng):
    for trial in range(30):
        rank = int(rng.integers(1, 5))
        shape = [int(v) for v in rng.integers(1, 7, size=rank)]
        axis = int(rng.integers(-rank, rank))
        parts = int(rng.integers(1, 4))
        cuts = np.sort(rng.integers(0, shape[axis] + 1, size=parts - 1))
        sizes = np.diff(np.concatenate([[0], cuts, [shape[axis]]])).astype(int).tolist()
        x = randn(rng, *shape)
        m = single_op_model(
            "Split", shape, {"axis": axis, "split": sizes}, outputs=parts, threads=1 + trial % 2
        )
        got = m.run(x)
        got = [got] if parts == 1 else got
        refs = np.split(x, np.cumsum(sizes)[:-1], axis=axis)
        assert len(got) == parts
        for g, r in zip(got, refs):
            assert_close(g, r.astype(np.float64), f"trial {trial} sizes {sizes} axis {axis}")


def test_split_equal_parts_without_sizes(rng):
    x = randn(rng, 2, 9, 4)
    got = single_op_model("Split", x.shape, {"axis": 1}, outputs=3).run(x)
    for g, r in zip(got, np.split(x, 3, axis=1)):
        assert_close(g, r.astype(np.float64))


# ---------------------------------------------------------------------------
# Transpose


def test_transpose_random(rng):
    for trial in range(40):
        rank = int(rng.integers(1, 6))
        shape = [int(v) for v in rng.integers(1, 6, size=rank)]
        perm = [int(v) for v in rng.permutation(rank)]
        x = randn(rng, *shape)
        got = single_op_model("Transpose", shape, {"perm": perm}, threads=1 + trial % 2).run(x)
        assert_close(got, np.transpose(x, perm).astype(np.float64), f"shape {shape} perm {perm}")


@pytest.mark.parametrize(
    "shape,perm",
    [
        ((2, 3, 5, 7), [0, 2, 3, 1]),  # NCHW -> NHWC
        ((2, 5, 7, 3), [0, 3, 1, 2]),  # NHWC -> NCHW
        ((1, 64, 33, 35), [0, 2, 3, 1]),
        ((3, 4, 37, 70), [0, 1, 3, 2]),  # last two dims
        ((65, 33), [1, 0]),
        ((1, 1, 40, 1), [3, 2, 1, 0]),
        ((2, 1, 3, 1, 4), [4, 3, 0, 2, 1]),
        ((3, 4, 5), [-1, 0, 1]),  # negative entries count from the end, as numpy
    ],
)
def test_transpose_fast_paths(rng, shape, perm):
    x = randn(rng, *shape)
    got = single_op_model("Transpose", shape, {"perm": perm}).run(x)
    assert_close(got, np.transpose(x, [p % len(shape) for p in perm]).astype(np.float64))


def test_transpose_default_reverses(rng):
    x = randn(rng, 2, 3, 4)
    assert_close(single_op_model("Transpose", x.shape).run(x), x.T.astype(np.float64))


# ---------------------------------------------------------------------------
# Resize


def resize_attrs(
    mode: str,
    coord: str,
    scales: Sequence[float] | None = None,
    sizes: Sequence[int] | None = None,
    nearest: str | None = None,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {"mode": mode, "coordinate_transformation_mode": coord}
    if scales is not None:
        attrs["scales"] = [float(s) for s in scales]
    if sizes is not None:
        attrs["sizes"] = [int(s) for s in sizes]
    if nearest is not None:
        attrs["nearest_mode"] = nearest
    return attrs


SCALES = [(2.0, 2.0), (3.0, 1.0), (0.5, 0.5), (1.5, 2.5), (0.7, 1.3), (1.75, 0.6), (4.0, 3.0)]


@pytest.mark.parametrize("align_corners", [False, True])
def test_resize_bilinear_vs_torch(rng, align_corners):
    # PyTorch bilinear (align_corners=False) is ONNX half_pixel with the coordinate
    # clamped at 0; pytorch_half_pixel differs only for an output length of 1
    # (ONNX maps it to 0, PyTorch does not) and is checked against onnxruntime below.
    coord = "align_corners" if align_corners else "half_pixel"
    for sc in SCALES:
        n, c, h, w = (
            int(rng.integers(1, 3)),
            int(rng.integers(1, 4)),
            int(rng.integers(1, 12)),
            int(rng.integers(1, 12)),
        )
        if int(np.floor(h * sc[0])) < 1 or int(np.floor(w * sc[1])) < 1:
            h, w = 4, 5
        x = randn(rng, n, c, h, w)
        got = single_op_model("Resize", x.shape, resize_attrs("linear", coord, scales=sc)).run(x)
        ref = F.interpolate(t64(x), scale_factor=sc, mode="bilinear", align_corners=align_corners)
        assert_close(got, ref, f"scales {sc} in {x.shape}")
        size = (int(rng.integers(1, 15)), int(rng.integers(1, 15)))
        got = single_op_model("Resize", x.shape, resize_attrs("linear", coord, sizes=size)).run(x)
        ref = F.interpolate(t64(x), size=size, mode="bilinear", align_corners=align_corners)
        assert_close(got, ref, f"sizes {size} in {x.shape}")


def test_resize_nearest_vs_torch(rng):
    # PyTorch "nearest" = asymmetric + floor; "nearest-exact" = half_pixel + round_prefer_ceil
    for sc in [(2.0, 2.0), (3.0, 1.0), (0.5, 0.5), (1.5, 2.5), (1.75, 0.6), (4.0, 3.0)]:
        h, w = int(rng.integers(2, 12)), int(rng.integers(2, 12))
        x = randn(rng, 2, 3, h, w)
        for torch_mode, coord, nearest in [
            ("nearest", "asymmetric", "floor"),
            ("nearest-exact", "half_pixel", "round_prefer_ceil"),
        ]:
            got = single_op_model(
                "Resize", x.shape, resize_attrs("nearest", coord, scales=sc, nearest=nearest)
            ).run(x)
            ref = F.interpolate(t64(x), scale_factor=sc, mode=torch_mode)
            assert_close(got, ref, f"{torch_mode} scales {sc} in {x.shape}")
            size = (int(rng.integers(1, 15)), int(rng.integers(1, 15)))
            got = single_op_model(
                "Resize", x.shape, resize_attrs("nearest", coord, sizes=size, nearest=nearest)
            ).run(x)
            ref = F.interpolate(t64(x), size=size, mode=torch_mode)
            assert_close(got, ref, f"{torch_mode} sizes {size} in {x.shape}")


def f32_scales(scales: Sequence[float]) -> tuple[float, float]:
    a, b = (float(np.float32(v)) for v in scales)
    return a, b


def onnx_resize(
    x: np.ndarray,
    mode: str,
    coord: str,
    nearest: str,
    scales: Sequence[float] | None,
    sizes: Sequence[int] | None,
) -> np.ndarray:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    inits = [helper.make_tensor("roi", TensorProto.FLOAT, [0], [])]
    names = ["x", "roi"]
    if scales is not None:
        inits.append(helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, *scales]))
        names.append("scales")
    else:
        names.append("")
        inits.append(helper.make_tensor("sizes", TensorProto.INT64, [4], [x.shape[0], x.shape[1], *sizes]))
        names.append("sizes")
    node = helper.make_node(
        "Resize", names, ["y"], mode=mode, coordinate_transformation_mode=coord, nearest_mode=nearest
    )
    graph = helper.make_graph(
        [node],
        "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(
        onnx._serialize(model) if hasattr(onnx, "_serialize") else model.SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("coord", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"])
@pytest.mark.parametrize("nearest", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
def test_resize_nearest_modes_vs_onnxruntime(rng, coord, nearest):
    # Exactly representable scales: every tie (scale 0.5, 1.5, 3.0 hit .5 and integer
    # coordinates) is then computed exactly by both sides. onnxruntime rounds
    # coordinates in float32, so for other scales near-ties can differ from the exact
    # mapping; those are checked against exact rational arithmetic below.
    for sc in [(2.0, 3.0), (0.5, 1.5), (1.75, 2.25), (0.625, 1.0), (0.75, 1.25)]:
        h, w = int(rng.integers(2, 10)), int(rng.integers(2, 10))
        x = randn(rng, 1, 2, h, w)
        got = single_op_model(
            "Resize", x.shape, resize_attrs("nearest", coord, scales=sc, nearest=nearest)
        ).run(x)
        ref = onnx_resize(x, "nearest", coord, nearest, sc, None)
        assert_close(got, ref.astype(np.float64), f"{coord}/{nearest} scales {sc} in {x.shape}")
    size = (7, 3)
    x = randn(rng, 2, 1, 5, 6)
    got = single_op_model("Resize", x.shape, resize_attrs("nearest", coord, sizes=size, nearest=nearest)).run(
        x
    )
    assert_close(got, onnx_resize(x, "nearest", coord, nearest, None, size).astype(np.float64), "sizes")


@pytest.mark.parametrize("coord", ["half_pixel", "align_corners"])
@pytest.mark.parametrize("nearest", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
def test_resize_nearest_exact_arithmetic(rng, coord, nearest):
    from fractions import Fraction
    from math import ceil, floor

    # Positions whose exact coordinate lies within 1e-9 of a rounding boundary are
    # decided by floating-point rounding (here: double) and are not compared.
    def source(o: int, n_in: int, n_out: int, scale: float) -> int:
        if coord == "half_pixel":
            c = (Fraction(2 * o + 1, 2)) / Fraction(scale) - Fraction(1, 2)
        else:
            c = Fraction(o * (n_in - 1), n_out - 1) if n_out > 1 else Fraction(0)
        r = {
            "round_prefer_floor": ceil(c - Fraction(1, 2)),
            "round_prefer_ceil": floor(c + Fraction(1, 2)),
            "floor": floor(c),
            "ceil": ceil(c),
        }[nearest]
        boundary = c - Fraction(1, 2) if nearest.startswith("round") else c
        if abs(boundary - round(boundary)) < Fraction(1, 10**9):
            return -1
        return min(max(r, 0), n_in - 1)

    for sc in [(0.6, 1.0 / 3.0), (1.7, 2.3), (2.0 / 3.0, 0.7), (1.2, 0.3)]:
        h, w = int(rng.integers(4, 21)), int(rng.integers(4, 21))
        x = randn(rng, 1, 1, h, w)
        oh, ow = int(np.floor(h * sc[0])), int(np.floor(w * sc[1]))
        rows = np.array([source(o, h, oh, sc[0]) for o in range(oh)])
        cols = np.array([source(o, w, ow, sc[1]) for o in range(ow)])
        got = single_op_model(
            "Resize", x.shape, resize_attrs("nearest", coord, scales=sc, nearest=nearest)
        ).run(x)
        ref = x[:, :, np.maximum(rows, 0)][:, :, :, np.maximum(cols, 0)].astype(np.float64)
        keep = np.ix_(rows >= 0, cols >= 0)
        assert_close(got[0, 0][keep], ref[0, 0][keep], f"{coord}/{nearest} {sc} in {x.shape}")


@pytest.mark.parametrize("coord", ["half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners"])
def test_resize_linear_onnx_modes_vs_onnxruntime(rng, coord):
    for sc in [f32_scales(s) for s in [(2.0, 3.0), (0.5, 1.5), (1.7, 2.3), (0.6, 1.0), (0.4, 0.5)]]:
        x = randn(rng, 1, 2, int(rng.integers(3, 10)), int(rng.integers(3, 10)))
        got = single_op_model("Resize", x.shape, resize_attrs("linear", coord, scales=sc)).run(x)
        ref = onnx_resize(x, "linear", coord, "round_prefer_floor", sc, None)
        assert_close(got, ref.astype(np.float64), f"{coord} scales {sc} in {x.shape}")


# ---------------------------------------------------------------------------
# ReduceMean, LayerNorm


def test_reduce_mean_random(rng):
    for trial in range(40):
        rank = int(rng.integers(1, 5))
        shape = [int(v) for v in rng.integers(1, 7, size=rank)]
        count = int(rng.integers(1, rank + 1))
        axes = sorted(int(a) for a in rng.choice(rank, size=count, replace=False))
        axes = [a - rank if rng.integers(0, 2) else a for a in axes]  # some negative
        keep = bool(trial % 2)
        x = randn(rng, *shape)
        got = single_op_model(
            "ReduceMean", shape, {"axes": axes, "keepdims": int(keep)}, threads=1 + trial % 2
        ).run(x)
        ref = x.astype(np.float64).mean(axis=tuple(axes), keepdims=keep)
        assert_close(got, np.asarray(ref), f"shape {shape} axes {axes} keepdims {keep}")


def test_reduce_mean_all_axes_by_default(rng):
    x = randn(rng, 3, 4, 5)
    got = single_op_model("ReduceMean", x.shape, {"keepdims": 0}).run(x)
    assert_close(got, np.asarray(x.astype(np.float64).mean()))


def test_layer_norm_random(rng):
    for trial in range(30):
        rank = int(rng.integers(1, 5))
        shape = [int(v) for v in rng.integers(1, 9, size=rank)]
        axis = int(rng.integers(-rank, rank))
        norm_shape = shape[axis:]
        affine = trial % 3
        gamma = randn(rng, *norm_shape) if affine >= 1 else None
        beta = randn(rng, *norm_shape) if affine == 2 else None
        eps = float(rng.choice([1e-5, 1e-6, 1e-3]))
        x = randn(rng, *shape) * 3.0 + 1.0
        consts = [gamma, beta] if beta is not None else ([gamma] if gamma is not None else [])
        got = single_op_model(
            "LayerNormalization", shape, {"axis": axis, "epsilon": eps}, consts, threads=1 + trial % 2
        ).run(x)
        ref = F.layer_norm(
            t64(x),
            norm_shape,
            None if gamma is None else t64(gamma),
            None if beta is None else t64(beta),
            eps,
        )
        assert_close(got, ref, f"shape {shape} axis {axis} affine {affine}")


def test_layer_norm_beta_without_gamma(rng):
    x = randn(rng, 2, 5, 16)
    beta = randn(rng, 16)
    got = single_op_model("LayerNormalization", x.shape, {}, [None, beta]).run(x)
    assert_close(got, F.layer_norm(t64(x), [16], None, t64(beta)))


def test_layer_norm_transformer_size(rng):
    x = randn(rng, 2, 197, 192)
    g, bt = randn(rng, 192), randn(rng, 192)
    got = single_op_model("LayerNormalization", x.shape, {"epsilon": 1e-6}, [g, bt]).run(x)
    assert_close(got, F.layer_norm(t64(x), [192], t64(g), t64(bt), 1e-6))


# ---------------------------------------------------------------------------
# MatMul

MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((1, 7), (7, 1)),
    ((5, 1), (1, 6)),
    ((2, 3, 17, 9), (2, 3, 9, 31)),
    ((2, 1, 5, 8), (3, 8, 7)),  # broadcast batch dims
    ((4, 6, 3), (1, 3, 2)),
    ((1, 10, 20), (3, 20, 10)),
    ((2, 197, 64), (2, 64, 197)),  # attention scores
    ((3, 33, 65), (65, 47)),  # B without batch dims: folded into M
]


@pytest.mark.parametrize("a_shape,b_shape", MATMUL_SHAPES)
def test_matmul_activations(rng, a_shape, b_shape):
    a, bm = randn(rng, *a_shape), randn(rng, *b_shape)
    b = sparsert.GraphBuilder("matmul")
    b.output(b.node("MatMul", [b.input("a", a_shape), b.input("b", b_shape)]))
    for threads in (1, 2):
        got = b.load(threads=threads).run([a, bm])
        assert_close(got, np.matmul(a.astype(np.float64), bm.astype(np.float64)), f"{a_shape} x {b_shape}")


@pytest.mark.parametrize(
    "a_shape,b_shape",
    [((5, 12), (12, 7)), ((2, 9, 31), (31, 16)), ((2, 3, 4), (2, 4, 5)), ((1, 1, 3), (3, 1))],
)
def test_matmul_constant_b(rng, a_shape, b_shape):
    a, bm = randn(rng, *a_shape), randn(rng, *b_shape)
    got = single_op_model("MatMul", a_shape, {}, [bm]).run(a)
    assert_close(got, np.matmul(a.astype(np.float64), bm.astype(np.float64)))
    # constant A, activation B
    got = single_op_model("MatMul", b_shape, {}, [a], x_first=False).run(bm)
    assert_close(got, np.matmul(a.astype(np.float64), bm.astype(np.float64)))


def test_matmul_random(rng):
    for trial in range(20):
        m, k, n = (int(v) for v in rng.integers(1, 40, size=3))
        batch = [int(v) for v in rng.integers(1, 4, size=int(rng.integers(0, 3)))]
        b_batch = [1 if rng.integers(0, 2) else d for d in batch][int(rng.integers(0, len(batch) + 1)) :]
        a, bm = randn(rng, *batch, m, k), randn(rng, *b_batch, k, n)
        b = sparsert.GraphBuilder("matmul")
        b.output(b.node("MatMul", [b.input("a", a.shape), b.input("b", bm.shape)]))
        got = b.load(threads=1 + trial % 2).run([a, bm])
        assert_close(got, np.matmul(a.astype(np.float64), bm.astype(np.float64)), f"{a.shape} x {bm.shape}")


def test_matmul_dynamic_batch(rng):
    b = sparsert.GraphBuilder("matmul")
    w = randn(rng, 24, 10)
    b.output(b.node("MatMul", [b.input("a", (-1, 7, 24)), b.constant("w", w)]))
    m = b.load()
    for n in (1, 4):
        a = randn(rng, n, 7, 24)
        assert_close(m.run(a), np.matmul(a.astype(np.float64), w.astype(np.float64)))


# ---------------------------------------------------------------------------
# errors at load: a clear ValueError (sparsert.FormatError) naming the problem


def load_error(
    op: str,
    x_shape: Sequence[int],
    attrs: dict[str, Any],
    constants: Sequence[np.ndarray | None] = (),
    outputs: int = 1,
    storage: str = "dense",
) -> str:
    b = sparsert.GraphBuilder("bad")
    x = b.input("x", x_shape)
    consts = [None if c is None else b.constant(f"c{i}", c, storage=storage) for i, c in enumerate(constants)]
    out = b.node(op, [x, *consts], attrs, outputs=outputs)
    for o in (out,) if isinstance(out, str) else out:
        b.output(o)
    with pytest.raises(ValueError) as info:
        b.load()
    return str(info.value)


@pytest.mark.parametrize(
    "op,shape,attrs,outputs,pattern",
    [
        ("Transpose", (2, 3, 4), {"perm": [0, 0, 1]}, 1, "not a permutation"),
        ("Transpose", (2, 3, 4), {"perm": [0, 3, 1]}, 1, "not a permutation"),
        ("Transpose", (2, 3, 4), {"perm": [1, 0]}, 1, "rank 3"),
        ("MaxPool", (1, 1, 4, 4), {}, 1, "'kernel_shape'"),
        ("MaxPool", (1, 1, 4, 4), {"kernel_shape": [2]}, 1, "1-D window"),
        ("MaxPool", (1, 1, 4, 4), {"kernel_shape": [2, 2, 2, 2]}, 1, "'kernel_shape'"),
        ("MaxPool", (1, 1, 4, 4), {"kernel_shape": [2, 2**40]}, 1, "'kernel_shape'"),
        ("MaxPool", (1, 1, 4, 4), {"kernel_shape": [2, 2], "dilations": [3 * 2**61, 1]}, 1, "'dilations'"),
        ("MaxPool", (1, 1, 4, 4), {"kernel_shape": [2, 2], "pads": [3 * 2**61, 0, 0, 0]}, 1, "'pads'"),
        ("AveragePool", (1, 1, 4, 4), {"kernel_shape": [2**62, 2]}, 1, "'kernel_shape'"),
        ("MaxPool", (1, 1, 4, 4), {"kernel_shape": [2, 2], "strides": [0, 1]}, 1, "'strides'"),
        ("MaxPool", (1, 1, 4, 4), {"kernel_shape": [2, 2], "pads": [2, 0, 0, 0]}, 1, "'pads'"),
        ("MaxPool", (1, 1, 4, 4), {"kernel_shape": [2, 2], "pads": [0, 0]}, 1, "'pads'"),
        ("MaxPool", (1, 1, 2, 2), {"kernel_shape": [3, 3]}, 1, "larger than the padded input"),
        ("MaxPool", (1, 4, 4), {"kernel_shape": [2, 2]}, 1, "4-D"),
        ("AveragePool", (1, 1, 4, 4), {"kernel_shape": [2, 2], "dilations": [2, 2]}, 1, "dilation"),
        ("AveragePool", (1, 1, 4, 4), {"kernel_shape": [2, 2], "count_include_pad": 2}, 1, "count_include_pad"),
        ("GlobalAveragePool", (3, 4), {}, 1, "rank >= 3"),
        ("Concat", (2, 3), {}, 1, "'axis'"),
        ("Split", (2, 6), {"axis": 1, "split": [2, 3]}, 2, "sum to 5"),
        ("Split", (2, 6), {"axis": 1, "split": [2, 4]}, 3, "3 outputs"),
        ("Split", (2, 7), {"axis": 1}, 2, "equal parts"),
        ("Split", (2, 6), {"axis": 2, "split": [3, 3]}, 2, "out of range"),
        ("Resize", (1, 1, 4, 4), {"mode": "cubic", "scales": [2.0, 2.0]}, 1, "'mode'"),
        ("Resize", (1, 1, 4, 4), {"scales": [2.0, 2.0], "sizes": [8, 8]}, 1, "exactly one"),
        ("Resize", (1, 1, 4, 4), {}, 1, "exactly one"),
        ("Resize", (1, 1, 4, 4), {"scales": [2.0, -1.0]}, 1, "'scales'"),
        ("Resize", (1, 1, 4, 4), {"scales": [0.1, 1.0]}, 1, "empty output"),
        (
            "Resize",
            (1, 1, 4, 4),
            {"sizes": [8, 8], "coordinate_transformation_mode": "tf_crop"},
            1,
            "coordinate_transformation_mode",
        ),
        ("Resize", (1, 1, 4, 4), {"sizes": [8, 8], "nearest_mode": "round"}, 1, "nearest_mode"),
        ("ReduceMean", (2, 3), {"axes": [2]}, 1, "out of range"),
        ("ReduceMean", (2, 3), {"axes": [1, -1]}, 1, "twice"),
        ("ReduceMean", (2, 3), {"axes": [1], "keepdims": 3}, 1, "keepdims"),
        ("LayerNormalization", (2, 3), {"axis": 2}, 1, "out of range"),
    ],
)
def test_bad_attributes_refused_at_load(op, shape, attrs, outputs, pattern):
    message = load_error(op, shape, attrs, outputs=outputs)
    assert pattern in message, message


def test_bad_constants_refused_at_load(rng):
    msg = load_error("LayerNormalization", (2, 8), {}, [randn(rng, 7)])
    assert "normalized shape is [8]" in msg, msg
    msg = load_error("MatMul", (2, 8), {}, [randn(rng, 7, 3)])
    assert "inner dims differ" in msg, msg
    msg = load_error("MatMul", (), {}, [randn(rng, 8, 3)])  # 1-D follows numpy.matmul; 0-d is refused
    assert "rank >= 1" in msg, msg
    w = randn(rng, 8, 3)
    w[w < 1.0] = 0.0
    msg = load_error("MatMul", (2, 8), {}, [w], storage="csr")
    assert "stored sparse" in msg, msg
    msg = load_error("Concat", (2, 3), {"axis": 0}, [randn(rng, 2, 4)])
    assert "does not match input 0" in msg, msg
    msg = load_error("MatMul", (2, 4, 8), {}, [randn(rng, 3, 8, 2)])
    assert "do not broadcast" in msg, msg


def test_run_time_shape_errors(rng):
    # a shape that only fails for the run-time batch is a ValueError naming the node
    b = sparsert.GraphBuilder("mm")
    b.output(b.node("MatMul", [b.input("a", (-1, 3, 4)), b.input("b", (2, 4, 5))]))
    m = b.load()
    assert m.run([randn(rng, 2, 3, 4), randn(rng, 2, 4, 5)]).shape == (2, 3, 5)
    with pytest.raises(ValueError, match="do not broadcast"):
        m.run([randn(rng, 3, 3, 4), randn(rng, 2, 4, 5)])


LARGE_CASES: list[tuple[str, tuple[int, ...], dict[str, Any]]] = [
    (
        "MaxPool",
        (2, 64, 57, 55),
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    ),
    ("AveragePool", (2, 64, 57, 55), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("GlobalAveragePool", (2, 256, 29, 31), {}),
    ("Transpose", (2, 64, 57, 55), {"perm": [0, 2, 3, 1]}),
    ("Transpose", (2, 57, 55, 64), {"perm": [0, 3, 1, 2]}),
    ("Transpose", (3, 64, 57, 55), {"perm": [1, 3, 0, 2]}),
    ("Resize", (2, 32, 41, 43), {"mode": "linear", "scales": [2.0, 2.0]}),
    (
        "Resize",
        (2, 32, 41, 43),
        {
            "mode": "nearest",
            "sizes": [90, 77],
            "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor",
        },
    ),
    ("ReduceMean", (2, 197, 384), {"axes": [1], "keepdims": 0}),
    ("ReduceMean", (2, 64, 57, 55), {"axes": [-1, -2]}),
    ("LayerNormalization", (4, 197, 384), {}),
    ("Split", (2, 96, 57, 55), {"axis": 1, "split": [32, 64]}),
]


@pytest.mark.parametrize(
    "op,shape,attrs", LARGE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(LARGE_CASES)]
)
def test_large_shapes_split_across_threads(rng, op, shape, attrs):
    # shapes big enough for several tasks: 2 threads must give the 1-thread result exactly
    x = randn(rng, *shape)
    outputs = len(attrs.get("split", [0]))
    one = single_op_model(op, shape, attrs, outputs=outputs, threads=1).run(x)
    two = single_op_model(op, shape, attrs, outputs=outputs, threads=2).run(x)
    for a, b in zip(one if outputs > 1 else [one], two if outputs > 1 else [two]):
        np.testing.assert_array_equal(a, b)
    if op == "Transpose":
        assert_close(two, np.transpose(x, attrs["perm"]).astype(np.float64))
    elif op == "LayerNormalization":
        assert_close(two, F.layer_norm(t64(x), [shape[-1]]))
    elif op == "ReduceMean":
        assert_close(
            two, x.astype(np.float64).mean(axis=tuple(attrs["axes"]), keepdims=bool(attrs.get("keepdims", 1)))
        )
    elif op == "MaxPool":
        assert_close(two, F.max_pool2d(t64(x), 3, 2, 1, ceil_mode=True))
    elif op == "Resize" and attrs["mode"] == "linear":
        assert_close(two, F.interpolate(t64(x), scale_factor=2.0, mode="bilinear"))


def test_matmul_large_multithreaded(rng):
    a, bm = randn(rng, 2, 4, 97, 64), randn(rng, 2, 4, 64, 131)
    b = sparsert.GraphBuilder("mm")
    b.output(b.node("MatMul", [b.input("a", a.shape), b.input("b", bm.shape)]))
    ref = np.matmul(a.astype(np.float64), bm.astype(np.float64))
    assert_close(b.load(threads=2).run([a, bm]), ref)
    assert_close(b.load(threads=1).run([a, bm]), ref)


@pytest.mark.parametrize(
    "op,shape,attrs,constants,kernel",
    [
        ("MaxPool", (1, 2, 4, 4), {"kernel_shape": [2, 2]}, [], "maxpool_separable"),
        ("AveragePool", (1, 2, 4, 4), {"kernel_shape": [2, 2]}, [], "avgpool_separable"),
        ("GlobalAveragePool", (1, 2, 4, 4), {}, [], "global_avgpool_ref"),
        ("Transpose", (1, 2, 4, 4), {"perm": [0, 2, 3, 1]}, [], "transpose_blocked"),
        ("Resize", (1, 2, 4, 4), {"mode": "linear", "scales": [2.0, 2.0]}, [], "resize_bilinear"),
        ("Resize", (1, 2, 4, 4), {"sizes": [3, 3]}, [], "resize_nearest"),
        ("ReduceMean", (1, 2, 4, 4), {"axes": [1]}, [], "reduce_ref"),
        ("LayerNormalization", (1, 2, 4, 4), {}, [], "layernorm_f32"),
        ("MatMul", (1, 2, 4, 4), {}, [np.ones((4, 3), np.float32)], "gemm_f32"),
    ],
)
def test_summary_names_kernel(op, shape, attrs, constants, kernel):
    rows = single_op_model(op, shape, attrs, constants).summary()
    assert len(rows) == 1
    assert str(rows[0]["kernel"]).startswith(kernel), rows[0]
