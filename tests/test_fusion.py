"""Load-time fusion (csrc/runtime/fusion.cc): fused graphs give the unfused result.

The unfused reference is the same graph with the intermediate tensors also
marked as graph outputs (fusion never goes through a graph output), plus torch.
Tolerance: max |y - ref| <= 1e-4 * max(|ref|) + 1e-6.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sparsert

SEED = int(os.environ.get("SPARSERT_TEST_SEED", "4321"))


def close(y: np.ndarray, ref: np.ndarray) -> None:
    assert y.shape == ref.shape
    assert float(np.max(np.abs(y - ref))) <= 1e-4 * float(np.max(np.abs(ref))) + 1e-6


def conv_w(rng: np.random.Generator, cout: int, cin: int, k: int) -> np.ndarray:
    w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
    w[rng.random(w.shape) < 0.7] = 0.0
    return w


def residual_block(expose: bool, rng_seed: int) -> tuple[Any, list[np.ndarray]]:
    rng = np.random.default_rng(rng_seed)
    w1, w2 = conv_w(rng, 8, 8, 3), conv_w(rng, 8, 8, 3)
    b1 = rng.standard_normal(8).astype(np.float32)
    g = sparsert.GraphBuilder("block")
    x = g.input("x", (2, 8, 9, 9))
    h = g.node("Conv", [x, g.constant("w1", w1, storage="csr"), g.constant("b1", b1)],
               {"pads": [1, 1, 1, 1]}, name="conv1")
    h = g.node("Relu", [h], name="relu1")
    c2 = g.node("Conv", [h, g.constant("w2", w2, storage="dense")], {"pads": [1, 1, 1, 1]}, name="conv2")
    s = g.node("Add", [x, c2], name="add")
    y = g.node("Relu", [s], name="relu2")
    g.output(y, "y")
    if expose:
        g.output(c2)
        g.output(h)
    return g.load(threads=2), [w1, b1, w2]


def test_conv_add_relu_fused() -> None:
    print(f"seed {SEED}")
    x = np.random.default_rng(SEED).standard_normal((2, 8, 9, 9)).astype(np.float32)
    fused, (w1, b1, w2) = residual_block(False, SEED)
    plain, _ = residual_block(True, SEED)
    y_fused = fused.run(x)
    y_plain = plain.run(x)[0]
    t = torch.from_numpy(x)
    h = F.relu(F.conv2d(t, torch.from_numpy(w1), torch.from_numpy(b1), padding=1))
    ref = F.relu(t + F.conv2d(h, torch.from_numpy(w2), padding=1)).numpy()
    close(y_fused, ref)
    close(y_plain, ref)
    rows = fused.summary([(2, 8, 9, 9)])
    assert [r["name"] for r in rows] == ["conv1", "conv2"]
    # conv1 -> relu1 still fuses (only relu1's output is exposed); conv2 -> add does not
    assert [r["name"] for r in plain.summary([(2, 8, 9, 9)])] == ["conv1", "conv2", "add", "relu2"]


def test_residual_produced_after_the_conv() -> None:
    # add(convA(x), convB(x)): convA's node must move to the Add's position.
    rng = np.random.default_rng(SEED + 1)
    wa, wb = conv_w(rng, 6, 4, 1), conv_w(rng, 6, 4, 3)
    g = sparsert.GraphBuilder("two")
    x = g.input("x", (1, 4, 7, 5))
    a = g.node("Conv", [x, g.constant("wa", wa)], name="convA")
    b = g.node("Conv", [x, g.constant("wb", wb)], {"pads": [1, 1, 1, 1]}, name="convB")
    g.output(g.node("Sigmoid", [g.node("Add", [a, b])]), "y")
    m = g.load(threads=1)
    xv = rng.standard_normal((1, 4, 7, 5)).astype(np.float32)
    t = torch.from_numpy(xv)
    ref = torch.sigmoid(F.conv2d(t, torch.from_numpy(wa)) + F.conv2d(t, torch.from_numpy(wb), padding=1))
    close(m.run(xv), ref.numpy())
    assert len(m.summary([(1, 4, 7, 5)])) == 2


def test_broadcast_residual_is_kept() -> None:
    # GCNet-like: x + conv(pool(x)) with the conv output [N, C, 1, 1] broadcast up.
    rng = np.random.default_rng(SEED + 2)
    w = conv_w(rng, 5, 5, 1)
    g = sparsert.GraphBuilder("gc")
    x = g.input("x", (2, 5, 6, 4))
    p = g.node("GlobalAveragePool", [x])
    c = g.node("Conv", [p, g.constant("w", w)])
    g.output(g.node("Relu", [g.node("Add", [x, c])]), "y")
    m = g.load(threads=1)
    xv = rng.standard_normal((2, 5, 6, 4)).astype(np.float32)
    t = torch.from_numpy(xv)
    ref = F.relu(t + F.conv2d(t.mean(dim=(2, 3), keepdim=True), torch.from_numpy(w)))
    close(m.run(xv), ref.numpy())
    assert [r["op"] for r in m.summary([(2, 5, 6, 4)])] == ["GlobalAveragePool", "Conv"]


def test_linear_activation_params_and_no_fusion_cases() -> None:
    rng = np.random.default_rng(SEED + 3)
    w = rng.standard_normal((7, 6)).astype(np.float32)
    cases: list[tuple[str, dict[str, Any], Any]] = [
        ("Clip", {"min": -0.3, "max": 0.4}, lambda t: torch.clamp(t, -0.3, 0.4)),
        ("LeakyRelu", {"alpha": 0.2}, lambda t: F.leaky_relu(t, 0.2)),
        ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, F.hardsigmoid),
        ("Gelu", {"approximate": "tanh"}, lambda t: F.gelu(t, approximate="tanh")),
        ("HardSwish", {}, F.hardswish),
    ]
    xv = rng.standard_normal((3, 6)).astype(np.float32)
    for op, attrs, fn in cases:
        g = sparsert.GraphBuilder("lin")
        x = g.input("x", (3, 6))
        g.output(g.node(op, [g.node("Linear", [x, g.constant("w", w)])], attrs), "y")
        m = g.load(threads=1)
        close(m.run(xv), fn(torch.from_numpy(xv) @ torch.from_numpy(w).T).numpy())
        assert len(m.summary([(3, 6)])) == 1, op
    # two readers of the Linear output: nothing fused
    g = sparsert.GraphBuilder("two_readers")
    x = g.input("x", (3, 6))
    h = g.node("Linear", [x, g.constant("w", w)])
    g.output(g.node("Add", [g.node("Relu", [h]), h]), "y")
    m = g.load(threads=1)
    ht = torch.from_numpy(xv) @ torch.from_numpy(w).T
    close(m.run(xv), (F.relu(ht) + ht).numpy())
    assert len(m.summary([(3, 6)])) == 3


@pytest.mark.parametrize("storage", ["dense", "csr"])
@pytest.mark.parametrize("batch", [2, 3, 300, 2049])
def test_batched_linear_fused_activation_in_row_chunks(storage: str, batch: int) -> None:
    """The batched Linear applies its fused activation and transposes back in chunks of rows
    (8192 / batch, a multiple of 4): row counts that leave a partial last chunk, batches that
    make the chunk 4 rows, both kernels; against PyTorch."""
    rng = np.random.default_rng(SEED + 11 + batch)
    rows, cols = 37, 19
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    if storage == "csr":
        w[rng.random(w.shape) < 0.8] = 0.0
    xv = (3.0 * rng.standard_normal((batch, cols))).astype(np.float32)
    for op, fn in (("Gelu", F.gelu), ("Relu", F.relu), ("Sigmoid", torch.sigmoid)):
        g = sparsert.GraphBuilder("lin")
        x = g.input("x", (batch, cols))
        g.output(g.node(op, [g.node("Linear", [x, g.constant("w", w, storage=storage)])]), "y")
        for threads in (1, 2):
            m = g.load(threads=threads)
            close(m.run(xv), fn(torch.from_numpy(xv) @ torch.from_numpy(w).T).numpy())
            assert len(m.summary([(batch, cols)])) == 1, op  # fused
