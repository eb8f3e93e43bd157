"""Concat in place (runtime/plan.cc): when every input of a Concat is a contiguous slice of its
output (batch 1 along the channels), the producers write straight into the output and the
Concat is skipped. These graphs mix eligible and ineligible inputs (graph inputs, constants,
graph outputs, aliases, an input repeated or shared by two Concats, nested Concats as in
DenseNet, batch > 1) and compare every output with a numpy reference, at 1 and 2 threads and
for two batch sizes in one model (one plan each).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import sparsert

SEED = int(os.environ.get("SPARSERT_TEST_SEED", "1234"))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def conv1x1(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.einsum("oc,nchw->nohw", w, x)


def kernels(model: sparsert.Model, shape: tuple[int, ...]) -> dict[str, str]:
    return {r["name"]: r["kernel"] for r in model.summary([shape])}


def test_densenet_style_nested_concats() -> None:
    """x0 -> [f1 = conv(relu(x0))] -> c1 = concat(x0', f1) -> f2 -> c2 = concat(c1, f2) -> ...: the
    running concat nests, every layer reads the concat it is a slice of."""
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    c0, growth, layers = 5, 3, 4
    b = sparsert.GraphBuilder("dense")
    x = b.input("x", (-1, c0, 6, 7))
    ws = []
    feats = b.node("Relu", [x], name="stem")  # a node output, so it can be a slice
    for i in range(layers):
        w = rng.standard_normal((growth, c0 + i * growth)).astype(np.float32)
        ws.append(w)
        h = b.node("Relu", [feats], name=f"bn{i}")
        f = b.node("Conv", [h, b.constant(f"w{i}", w.reshape(*w.shape, 1, 1))], name=f"conv{i}")
        feats = b.node("Concat", [feats, f], {"axis": 1}, name=f"cat{i}")
    b.output(b.node("Relu", [feats], name="head"), "y")
    for threads in (1, 2):
        m = b.load(threads=threads)
        for n in (1, 3, 1):
            xv = rng.standard_normal((n, c0, 6, 7)).astype(np.float32)
            ref = relu(xv)
            for w in ws:
                ref = np.concatenate([ref, conv1x1(relu(ref), w)], axis=1)
            np.testing.assert_allclose(m.run(xv), relu(ref), rtol=1e-5, atol=1e-5,
                                       err_msg=f"n={n} t={threads}")
        k = kernels(m, (1, c0, 6, 7))
        assert all(k[f"cat{i}"].startswith("in place") for i in range(layers)), k
        k3 = kernels(m, (3, c0, 6, 7))
        assert all(k3[f"cat{i}"] == "concat_copy" for i in range(layers)), k3


def test_ineligible_inputs_are_copied() -> None:
    """Inputs that cannot be slices: a graph input, a constant, a graph output, an alias, the same
    slot twice, a slot shared by two Concats; the concat output as a graph output."""
    rng = np.random.default_rng(SEED + 1)
    b = sparsert.GraphBuilder("mixed")
    x = b.input("x", (1, 2, 3, 4))
    k = rng.standard_normal((1, 1, 3, 4)).astype(np.float32)
    a = b.node("Relu", [x], name="a")
    s = b.node("Sigmoid", [x], name="s")
    flat = b.node("Reshape", [b.node("Tanh", [x], name="t")], {"shape": [1, 2, 3, 4]}, name="alias")
    cat_input = b.node("Concat", [x, a], {"axis": 1}, name="cat_graph_input")
    cat_const = b.node("Concat", [a, b.constant("k", k)], {"axis": 1}, name="cat_const")
    cat_twice = b.node("Concat", [s, s], {"axis": 1}, name="cat_twice")
    cat_alias = b.node("Concat", [flat, s], {"axis": 1}, name="cat_alias")
    u = b.node("Abs", [x], name="u")
    v = b.node("Neg", [x], name="v")
    cat_first = b.node("Concat", [u, v], {"axis": 1}, name="cat_first")
    cat_shared = b.node("Concat", [v, u], {"axis": 1}, name="cat_shared")
    w = b.node("Exp", [x], name="w")
    cat_out = b.node("Concat", [w, u], {"axis": 1}, name="cat_out")
    b.output(cat_input, "o1")
    b.output(cat_const, "o2")
    b.output(cat_twice, "o3")
    b.output(cat_alias, "o4")
    b.output(b.node("Relu", [cat_first]), "o5")
    b.output(b.node("Relu", [cat_shared]), "o6")
    b.output(w, "w_out")  # a graph output cannot also be a slice of cat_out
    b.output(cat_out, "o7")
    xv = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    sig, th, ab = 1 / (1 + np.exp(-xv)), np.tanh(xv), np.abs(xv)
    want = [
        np.concatenate([xv, relu(xv)], 1),
        np.concatenate([relu(xv), k], 1),
        np.concatenate([sig, sig], 1),
        np.concatenate([th, sig], 1),
        relu(np.concatenate([ab, -xv], 1)),
        relu(np.concatenate([-xv, ab], 1)),
        np.exp(xv),
        np.concatenate([np.exp(xv), ab], 1),
    ]
    for threads in (1, 2):
        got = b.load(threads=threads).run(xv)
        for i, (g, r) in enumerate(zip(got, want)):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6, err_msg=f"output {i} threads={threads}")
    kinds = kernels(b.load(threads=1), (1, 2, 3, 4))
    assert kinds["cat_first"].startswith("in place"), kinds
    for name in ("cat_graph_input", "cat_const", "cat_twice", "cat_alias", "cat_shared", "cat_out"):
        assert kinds[name] == "concat_copy", (name, kinds)


@pytest.mark.parametrize("axis", [1, 2, 3, -1])
def test_inner_axes_and_multi_output_producers(axis: int) -> None:
    """Split outputs (one node, several outputs) concatenated back in another order (a channel
    shuffle): in place along the channels, and along H when N = C = 1; copied along W (H > 1)."""
    rng = np.random.default_rng(SEED + 2 + axis)
    shape = (1, 1, 4, 6) if axis in (2, 3, -1) else (1, 6, 4, 5)
    b = sparsert.GraphBuilder("split_cat")
    x = b.input("x", shape)
    parts = b.node("Split", [b.node("Relu", [x])], {"axis": axis, "num_outputs": 2}, outputs=2)
    cat = b.node("Concat", [parts[1], parts[0]], {"axis": axis}, name="cat")
    b.output(b.node("Neg", [cat]), "y")
    xv = rng.standard_normal(shape).astype(np.float32)
    p0, p1 = np.split(relu(xv), 2, axis=axis)
    for threads in (1, 2):
        m = b.load(threads=threads)
        np.testing.assert_allclose(m.run(xv), -np.concatenate([p1, p0], axis), rtol=1e-6)
    contiguous = all(d == 1 for d in shape[: axis % len(shape)])  # only 1s before the axis
    assert kernels(m, shape)["cat"].startswith("in place") == contiguous


def test_zero_sized_slice() -> None:
    rng = np.random.default_rng(SEED + 9)
    b = sparsert.GraphBuilder("zero")
    x = b.input("x", (1, 3, 2, -1))
    a = b.node("Relu", [x], name="a")
    z = b.node("Tanh", [x], name="z")
    b.output(b.node("Concat", [a, z], {"axis": 1}, name="cat"), "y")
    m = b.load(threads=2)
    for w in (0, 5):
        xv = rng.standard_normal((1, 3, 2, w)).astype(np.float32)
        np.testing.assert_allclose(m.run(xv), np.concatenate([relu(xv), np.tanh(xv)], 1), rtol=1e-6)
