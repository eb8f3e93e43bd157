"""Write .spr models on x86 (CSR and dense Linear, a CNN with every conv path),
run them with the ARM example under qemu, and compare with the x86 Python runtime.

    python .ci/arm_check.py EXAMPLE [EMULATOR ARGS...]

EMULATOR defaults to `qemu-aarch64-static -L /usr/aarch64-linux-gnu`. The CNN is
run twice on ARM: with the default kernel choice, and with the sparse 3x3
stride-1 conv forced onto the direct kernel (SPARSERT_CONV_SPARSE=direct,
SPARSERT_CONV_KERNEL=sparse), so the NEON sparse-direct and depthwise kernels
run end to end whatever the crossover densities say.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import sparsert

exe = sys.argv[1]
emulator = sys.argv[2:] or ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu"]
rng = np.random.default_rng(7)
tmp = Path(tempfile.mkdtemp())


def check(name: str, g: sparsert.GraphBuilder, x: np.ndarray, env: dict[str, str] | None = None) -> None:
    path = g.save(tmp / f"{name}.spr")
    np.save(tmp / "x.npy", x)
    want = sparsert.load(path).run(x)
    proc = subprocess.run(
        [*emulator, exe, str(path), str(tmp / "x.npy"), str(tmp / "y.npy")],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name}: the ARM example failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    got = np.load(tmp / "y.npy")
    assert got.shape == want.shape, f"{name}: ARM output shape {got.shape}, x86 {want.shape}"
    err = float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max())))
    label = name + (" " + " ".join(f"{k}={v}" for k, v in env.items()) if env else "")
    print(f"{label}: x86 vs ARM max relative difference {err:.2e}")
    assert err < 1e-5, f"{label}: {proc.stdout[:500]}"


def sparse(shape: tuple[int, ...], sparsity: float) -> np.ndarray:
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) < sparsity] = 0
    return w


g = sparsert.GraphBuilder("arm-mlp")
x = g.input("x", (-1, 200))
h = g.node(
    "Linear",
    [x, g.constant("w", sparse((300, 200), 0.9), storage="csr"), g.constant("b", rng.standard_normal(300))],
    {"activation": "relu"},
)
y = g.node("Linear", [h, g.constant("w2", rng.standard_normal((10, 300)).astype(np.float32))])
g.output(y, "y")
check("mlp", g, rng.standard_normal((5, 200)).astype(np.float32))

# dense 3x3 (im2col + gemm) -> depthwise 3x3 -> sparse 3x3 stride 1 (direct or
# im2col + spmm) -> depthwise 3x3 stride 2 (strided loads) -> sparse 3x3 stride 2
# (im2col + spmm) -> sparse 1x1 (pointwise spmm); odd sizes for the column tails.
g = sparsert.GraphBuilder("arm-cnn")
x = g.input("x", (1, 3, 19, 21))
h = g.node(
    "Conv",
    [
        x,
        g.constant("w1", rng.standard_normal((16, 3, 3, 3)).astype(np.float32)),
        g.constant("b1", rng.standard_normal(16)),
    ],
    {"pads": [1, 1, 1, 1], "activation": "relu"},
)
h = g.node(
    "Conv",
    [h, g.constant("dw1", rng.standard_normal((16, 1, 3, 3)).astype(np.float32))],
    {"pads": [1, 1, 1, 1], "group": 16},
)
h = g.node(
    "Conv",
    [
        h,
        g.constant("w2", sparse((24, 16, 3, 3), 0.9), storage="csr"),
        g.constant("b2", rng.standard_normal(24)),
    ],
    {"pads": [1, 1, 1, 1], "activation": "relu"},
)
h = g.node(
    "Conv",
    [h, g.constant("dw2", rng.standard_normal((24, 1, 3, 3)).astype(np.float32))],
    {"strides": [2, 2], "pads": [1, 1, 1, 1], "group": 24},
)
h = g.node(
    "Conv",
    [h, g.constant("w3", sparse((32, 24, 3, 3), 0.9), storage="csr")],
    {"strides": [2, 2], "pads": [1, 1, 1, 1]},
)
h = g.node("Conv", [h, g.constant("w4", sparse((8, 32, 1, 1), 0.8), storage="csr")])
g.output(h, "y")
x_cnn = rng.standard_normal((1, 3, 19, 21)).astype(np.float32)
check("cnn", g, x_cnn)
check("cnn", g, x_cnn, {"SPARSERT_CONV_SPARSE": "direct", "SPARSERT_CONV_KERNEL": "sparse"})
print("x86-written .spr files give the same results on ARM")
