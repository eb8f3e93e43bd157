"""Write .spr models on x86 (CSR and dense Linear, a small CNN), run them with the
aarch64 example under qemu, and compare with the x86 Python runtime."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import sparsert

exe = sys.argv[1]
rng = np.random.default_rng(7)
tmp = Path(tempfile.mkdtemp())


def check(name: str, g: sparsert.GraphBuilder, x: np.ndarray) -> None:
    path = g.save(tmp / f"{name}.spr")
    np.save(tmp / "x.npy", x)
    want = sparsert.load(path).run(x)
    proc = subprocess.run(
        ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu", exe, path, str(tmp / "x.npy"), str(tmp / "y.npy")],
        capture_output=True, text=True, check=True,
    )
    got = np.load(tmp / "y.npy")
    err = float(np.abs(got - want).max() / max(1.0, np.abs(want).max()))
    print(f"{name}: x86 vs aarch64 max relative difference {err:.2e}")
    assert err < 1e-5, proc.stdout[:500]


w = rng.standard_normal((300, 200)).astype(np.float32)
w[rng.random(w.shape) < 0.9] = 0
g = sparsert.GraphBuilder("arm-mlp")
x = g.input("x", (-1, 200))
h = g.node("Linear", [x, g.constant("w", w, storage="csr"), g.constant("b", rng.standard_normal(300))],
           {"activation": "relu"})
y = g.node("Linear", [h, g.constant("w2", rng.standard_normal((10, 300)).astype(np.float32))])
g.output(y, "y")
check("mlp", g, rng.standard_normal((5, 200)).astype(np.float32))

if "Conv2d" in sparsert.supported_ops():
    g = sparsert.GraphBuilder("arm-cnn")
    x = g.input("x", (1, 3, 17, 17))
    w1 = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    w2[rng.random(w2.shape) < 0.9] = 0
    h = g.node("Conv2d", [x, g.constant("w1", w1)], {"pads": [1, 1, 1, 1], "activation": "relu"})
    h = g.node("Conv2d", [h, g.constant("w2", w2, storage="csr")], {"strides": [2, 2], "pads": [1, 1, 1, 1]})
    g.output(g.node("GlobalAveragePool", [h]), "y")
    check("cnn", g, rng.standard_normal((1, 3, 17, 17)).astype(np.float32))
print("x86-written .spr files give the same results on aarch64")
