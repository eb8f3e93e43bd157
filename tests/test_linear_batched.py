"""Batched Linear (X transposed in, Y^T transposed out in 4 x 4 register tiles) and the AVX2 GEMV
against numpy float64, on batch sizes and widths around the tile and vector edges, dense and CSR
weights, 1 and 2 threads, every ISA this machine runs. Tolerance: max |y - ref| <= 1e-5 * (max |ref|
+ 1) (float32 accumulation over K <= 700)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import sparsert

SEED = int(os.environ.get("SPARSERT_TEST_SEED", "1234"))


@pytest.mark.parametrize("isa", sparsert.supported_isas())
@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_linear_batch_and_width_edges(isa: str, storage: str) -> None:
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    for batch in (1, 2, 3, 4, 5, 7, 9, 17, 64, 130):
        rows, cols = int(rng.integers(1, 40)), int(rng.choice([1, 3, 4, 5, 8, 13, 256, 257, 700]))
        w = rng.standard_normal((rows, cols)).astype(np.float32)
        if storage == "csr":
            w[rng.random(w.shape) < 0.9] = 0.0
        b = rng.standard_normal(rows).astype(np.float32)
        x = rng.standard_normal((batch, cols)).astype(np.float32)
        g = sparsert.GraphBuilder("lin")
        xi = g.input("x", (-1, cols))
        g.output(g.node("Linear", [xi, g.constant("w", w, storage=storage), g.constant("b", b)]), "y")
        ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
        for threads in (1, 2):
            kernel = "sparse" if storage == "csr" else "dense"
            y = g.load(threads=threads, isa=isa, layer_kernel=kernel).run(x)
            err = float(np.abs(y - ref).max())
            assert err <= 1e-5 * (float(np.abs(ref).max()) + 1), (batch, rows, cols, threads, err)
