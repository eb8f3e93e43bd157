"""The transformer op path (issue #6): a BERT-style encoder layer built with
sparsert.GraphBuilder against a torch float64 reference, the vectorised
eltwise activations (kernels/eltwise) through their ops against numpy / scipy
for every ISA this CPU runs, and MatMul / LayerNorm / Softmax edge shapes.

Tolerances (elementwise |got - ref| <= atol + rtol * |ref|, ref in float64
from the same float32 inputs):
- encoder layer: rtol = atol = 1e-4 (several float32 GEMMs, softmax and two
  LayerNorms in a row);
- activations: rtol = 1e-6 (gelu_tanh: 1e-6 * (1 + |2u| (1 - sigmoid(2u))),
  the float rounding of its argument 2u amplified by sigmoid), atol = 8 * 2^-149
  (a few denormal spacings; SiLU: times max(1, |x|), since its sigmoid factor
  is denormal below x = -87), NaN exactly where the reference is NaN;
- MatMul / Softmax / LayerNorm edge shapes: rtol = atol = 1e-5.
The tests/cpp/test_eltwise.cc GoogleTest calls the kernels directly (exp and
erf too, which no op exposes alone).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F
from conftest import random_sparse

import sparsert

DENORMAL = 2.0**-149


# --- the encoder layer ---------------------------------------------------------


def _encoder_weights(
    rng: np.random.Generator, hidden: int, ffn: int, sparsity: float
) -> dict[str, np.ndarray]:
    def linear(fin: int, fout: int) -> np.ndarray:
        return (random_sparse(rng, (fout, fin), sparsity) / math.sqrt(fin)).astype(np.float32)

    w: dict[str, np.ndarray] = {}
    for name, (fin, fout) in {
        "q": (hidden, hidden),
        "k": (hidden, hidden),
        "v": (hidden, hidden),
        "o": (hidden, hidden),
        "f1": (hidden, ffn),
        "f2": (ffn, hidden),
    }.items():
        w[name + ".w"] = linear(fin, fout)
        w[name + ".b"] = (0.1 * rng.standard_normal(fout)).astype(np.float32)
    for ln in ("ln1", "ln2"):
        w[ln + ".g"] = (1.0 + 0.1 * rng.standard_normal(hidden)).astype(np.float32)
        w[ln + ".b"] = (0.1 * rng.standard_normal(hidden)).astype(np.float32)
    return w


def _encoder_model(
    w: dict[str, np.ndarray], seq: int, hidden: int, heads: int, gelu: str, storage: str, threads: int
) -> sparsert.Model:
    """Post-LayerNorm BERT layer: the same node pattern as benchmarks/models.py."""
    d = hidden // heads
    b = sparsert.GraphBuilder("encoder")
    x = b.input("x", (-1, seq, hidden))

    def const(name: str) -> str:
        st = storage if name.endswith(".w") else "dense"
        return b.constant(name, w[name], storage=st)

    def linear(inp: str, name: str, act: str = "none") -> str:
        return b.node("Linear", [inp, const(name + ".w"), const(name + ".b")], {"activation": act})

    def heads_of(name: str, perm: list[int]) -> str:
        r = b.node("Reshape", [linear(x, name)], {"shape": [0, 0, heads, d]})
        return b.node("Transpose", [r], {"perm": perm})

    q = heads_of("q", [0, 2, 1, 3])
    k = heads_of("k", [0, 2, 3, 1])
    v = heads_of("v", [0, 2, 1, 3])
    scores = b.node("MatMul", [q, k])
    scaled = b.node("Mul", [scores, b.constant("scale", np.array([1.0 / math.sqrt(d)], np.float32))])
    p = b.node("Softmax", [scaled], {"axis": -1})
    ctx = b.node("Transpose", [b.node("MatMul", [p, v])], {"perm": [0, 2, 1, 3]})
    ctx = b.node("Reshape", [ctx], {"shape": [0, 0, hidden]})
    h = b.node("Add", [x, linear(ctx, "o")])
    h = b.node("LayerNormalization", [h, const("ln1.g"), const("ln1.b")], {"axis": -1, "epsilon": 1e-12})
    f = linear(linear(h, "f1", gelu), "f2")
    y = b.node("Add", [h, f])
    y = b.node("LayerNormalization", [y, const("ln2.g"), const("ln2.b")], {"axis": -1, "epsilon": 1e-12})
    b.output(y, "y")
    return b.load(threads=threads)


def _encoder_reference(w: dict[str, np.ndarray], x: np.ndarray, heads: int, gelu: str) -> np.ndarray:
    t = {k: torch.from_numpy(v.astype(np.float64)) for k, v in w.items()}
    xt = torch.from_numpy(x.astype(np.float64))
    bsz, seq, hidden = x.shape
    d = hidden // heads

    def lin(inp: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(inp, t[name + ".w"], t[name + ".b"])

    def split(z: torch.Tensor) -> torch.Tensor:
        return z.reshape(bsz, seq, heads, d).transpose(1, 2)

    q, k, v = split(lin(xt, "q")), split(lin(xt, "k")), split(lin(xt, "v"))
    p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    ctx = (p @ v).transpose(1, 2).reshape(bsz, seq, hidden)
    h = F.layer_norm(xt + lin(ctx, "o"), (hidden,), t["ln1.g"], t["ln1.b"], 1e-12)
    f = lin(F.gelu(lin(h, "f1"), approximate="tanh" if gelu == "gelu_tanh" else "none"), "f2")
    return F.layer_norm(h + f, (hidden,), t["ln2.g"], t["ln2.b"], 1e-12).numpy()


@pytest.mark.parametrize("storage", ["dense", "csr"])
@pytest.mark.parametrize("gelu", ["gelu", "gelu_tanh"])
def test_encoder_layer_matches_torch(rng: np.random.Generator, storage: str, gelu: str) -> None:
    heads = int(rng.integers(1, 5))
    d = int(rng.choice([5, 8, 13, 16]))
    hidden = heads * d
    seq = int(rng.choice([1, 7, 17, 33]))
    ffn = int(rng.integers(hidden, 4 * hidden + 3))
    sparsity = 0.0 if storage == "dense" else 0.9
    w = _encoder_weights(rng, hidden, ffn, sparsity)
    models = {t: _encoder_model(w, seq, hidden, heads, gelu, storage, t) for t in (1, 2)}
    for batch, threads in ((1, 1), (2, 1), (3, 2)):
        x = rng.standard_normal((batch, seq, hidden)).astype(np.float32)
        got = models[threads].run(x)
        assert got.shape == (batch, seq, hidden)
        ref = _encoder_reference(w, x, heads, gelu)
        np.testing.assert_allclose(
            got,
            ref,
            rtol=1e-4,
            atol=1e-4,
            err_msg=f"heads {heads} d {d} seq {seq} ffn {ffn} batch {batch} threads {threads} {storage}",
        )


# --- activations, per ISA ----------------------------------------------------------

ACTIVATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "tanh": ("Tanh", {}),
    "sigmoid": ("Sigmoid", {}),
    "silu": ("Silu", {}),
    "gelu": ("Gelu", {}),
    "gelu_tanh": ("Gelu", {"approximate": "tanh"}),
}

def _wide_inputs(rng: np.random.Generator) -> np.ndarray:
    f32 = np.finfo(np.float32)
    special = [
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        1e-45,
        -1e-45,
        1e-40,
        -1e-40,
        f32.tiny,
        -f32.tiny,
        f32.max,
        -f32.max,
        0.5,
        -0.5,
        0.625,
        -0.625,
        88.72,
        89.0,
        -87.34,
        -103.97,
        -104.0,
        -110.0,
        14.0,
        -14.0,
        20.0,
        -20.0,
        20.01,
        -20.01,
        200.0,
        -200.0,
        1e30,
        -1e30,
    ]
    mags = 10.0 ** rng.uniform(-40, 5, 4001)
    x = np.concatenate(
        [
            np.array(special, np.float64),
            rng.uniform(-12, 12, 20001),
            rng.uniform(-120, 100, 5003),
            mags * rng.choice([-1.0, 1.0], mags.size),
        ]
    )
    return x.astype(np.float32)


def _reference(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 reference and the per-element relative tolerance."""
    xd = x.astype(np.float64)
    rtol = np.full(x.shape, 1e-6)
    with np.errstate(all="ignore"):
        if name == "tanh":
            ref = np.tanh(xd)
        elif name == "sigmoid":
            ref = scipy.special.expit(xd)
        elif name == "silu":
            ref = np.where(xd == -np.inf, -0.0, xd * scipy.special.expit(xd))
        elif name == "gelu":
            ref = np.where(
                np.isinf(xd), np.where(xd > 0, xd, -0.0), 0.5 * xd * scipy.special.erfc(-xd / math.sqrt(2))
            )
        else:
            v = 2.0 * math.sqrt(2.0 / math.pi) * (xd + 0.044715 * xd**3)
            ref = np.where(np.isinf(xd), np.where(xd > 0, xd, -0.0), xd * scipy.special.expit(v))
            cond = np.abs(v) * (1.0 - scipy.special.expit(v))
            rtol = 1e-6 * (1.0 + np.where(np.isfinite(cond), cond, 0.0))
    return ref, rtol


@pytest.mark.parametrize("isa", sparsert.supported_isas())
def test_activations_match_scipy(rng: np.random.Generator, isa: str) -> None:
    """Every compiled kernel set, in this one process: the ISA is a load option."""
    x = _wide_inputs(rng)
    got_all = {}
    for key, (op, attrs) in ACTIVATIONS.items():
        b = sparsert.GraphBuilder(key)
        b.output(b.node(op, [b.input("x", x.shape)], attrs))
        m = b.load(threads=1, isa=isa)
        assert m.isa == isa
        got_all[key] = m.run(x)
    b = sparsert.GraphBuilder("softmax")
    b.output(b.node("Softmax", [b.input("x", (1, 8))], {"axis": -1}))
    got_all["kernel"] = str(b.load(threads=1, isa=isa).summary())
    expected_kernel = "softmax_f32_" + ("ref" if isa == "scalar" else isa)
    for name in ACTIVATIONS:
        got = got_all[name]
        ref, rtol = _reference(name, x)
        ref32 = ref.astype(np.float32)
        assert np.array_equal(np.isnan(got), np.isnan(ref32)), f"{isa} {name}: NaN where the reference is not"
        inf = np.isinf(ref32)
        assert np.array_equal(got[inf], ref32[inf]), f"{isa} {name}: infinities differ"
        ok = ~np.isnan(ref32) & ~inf
        atol = 8 * DENORMAL * (np.maximum(1.0, np.abs(x[ok].astype(np.float64))) if name == "silu" else 1.0)
        err = np.abs(got[ok].astype(np.float64) - ref32[ok])
        bad = err > rtol[ok] * np.abs(ref32[ok]) + atol
        assert not bad.any(), (
            f"{isa} {name}: {bad.sum()} elements off, e.g. x={x[ok][bad][:4]} got={got[ok][bad][:4]} "
            f"ref={ref32[ok][bad][:4]}"
        )
    assert expected_kernel in got_all["kernel"], got_all["kernel"]


# --- edge shapes ----------------------------------------------------------------


def _single(
    op: str, x_shape: Sequence[int], attrs: dict[str, Any] | None = None, consts: Sequence[np.ndarray] = ()
) -> sparsert.Model:
    b = sparsert.GraphBuilder(op.lower())
    ins = [b.input("x", x_shape)] + [b.constant(f"c{i}", c) for i, c in enumerate(consts)]
    b.output(b.node(op, ins, attrs or {}))
    return b.load(threads=1)


@pytest.mark.parametrize("n", [1, 2, 3, 15, 16, 17, 33, 128, 1001])
@pytest.mark.parametrize("rows", [1, 5])
def test_softmax_last_axis_edge_sizes(rng: np.random.Generator, rows: int, n: int) -> None:
    x = (3.0 * rng.standard_normal((rows, n))).astype(np.float32)
    if n > 2:
        x[0, n // 2] = -np.inf  # an attention mask entry gives exactly 0
    got = _single("Softmax", x.shape, {"axis": -1}).run(x)
    ref = torch.softmax(torch.from_numpy(x.astype(np.float64)), dim=-1).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    if n > 2:
        assert got[0, n // 2] == 0.0


def test_softmax_special_rows_and_inner_axis(rng: np.random.Generator) -> None:
    x = np.full((3, 17), -np.inf, np.float32)
    x[1, :5] = 1.0
    x[1, 7] = np.inf  # +inf in a row: NaN, as torch
    x[2, :] = rng.standard_normal(17)
    got = _single("Softmax", x.shape, {"axis": -1}).run(x)
    ref = torch.softmax(torch.from_numpy(x.astype(np.float64)), dim=-1).numpy()
    assert np.isnan(got[0]).all() and np.isnan(ref[0]).all()
    assert np.isnan(got[1]).all() and np.isnan(ref[1]).all()
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-5, atol=1e-5)
    # a non-last axis runs the strided path
    y = rng.standard_normal((2, 7, 3)).astype(np.float32)
    got = _single("Softmax", y.shape, {"axis": 1}).run(y)
    np.testing.assert_allclose(
        got, torch.softmax(torch.from_numpy(y.astype(np.float64)), dim=1).numpy(), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("n", [1, 2, 7, 16, 17, 31, 768, 1001])
@pytest.mark.parametrize("affine", [False, True])
def test_layernorm_edge_sizes(rng: np.random.Generator, n: int, affine: bool) -> None:
    x = (50.0 + 2.0 * rng.standard_normal((3, n))).astype(np.float32)  # a large mean on purpose
    x[1] = x[1, :1]  # a constant row: variance 0, output beta
    g = (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    consts = [g, bias] if affine else []
    got = _single("LayerNormalization", x.shape, {"axis": -1, "epsilon": 1e-5}, consts).run(x)
    t = torch.from_numpy(x.astype(np.float64))
    ref = F.layer_norm(
        t,
        (n,),
        torch.from_numpy(g.astype(np.float64)) if affine else None,
        torch.from_numpy(bias.astype(np.float64)) if affine else None,
        1e-5,
    ).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "a_shape,b_shape",
    [
        ((1, 1), (1, 1)),
        ((1, 7), (7, 33)),  # one row
        ((17, 1), (1, 5)),  # K = 1
        ((3, 19), (19, 1)),  # one column
        ((2, 12, 1, 64), (2, 12, 64, 9)),  # per-head, one query
        ((1, 5, 13, 7), (1, 5, 7, 13)),  # odd per-head sizes
        ((4, 9, 11), (11, 3)),  # batch folded into M
        ((3, 1, 6, 5), (1, 4, 5, 2)),  # broadcast batch dims
    ],
)
def test_matmul_edge_shapes(
    rng: np.random.Generator, a_shape: tuple[int, ...], b_shape: tuple[int, ...]
) -> None:
    a = rng.standard_normal(a_shape).astype(np.float32)
    bm = rng.standard_normal(b_shape).astype(np.float32)
    b = sparsert.GraphBuilder("mm")
    y = b.node("MatMul", [b.input("a", a_shape), b.input("b", b_shape)])
    b.output(y)
    m = b.load(threads=1)
    got = m.run({"a": a, "b": bm})
    ref = np.matmul(a.astype(np.float64), bm.astype(np.float64))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_bad_matmul_shapes_are_refused() -> None:
    b = sparsert.GraphBuilder("mm")
    y = b.node("MatMul", [b.input("a", (2, 3)), b.input("b", (4, 5))])
    b.output(y)
    with pytest.raises(Exception, match="inner dims"):
        b.load(threads=1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v", *os.sys.argv[1:]]))
