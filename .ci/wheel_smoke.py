"""Smoke test of an installed sparsert wheel, run from outside the source tree (by .ci/wheel.sh
and by cibuildwheel's test-command): the compiled module imports, a CSR model builds, saves,
loads and matches numpy at several batch sizes, and the command-line entry point runs."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

import sparsert

here = os.path.dirname(os.path.abspath(sparsert.__file__))
assert "site-packages" in here or "dist-packages" in here, f"sparsert imported from the source tree: {here}"
print("sparsert", sparsert.__version__, "kernels:", sparsert.cpu_features(), "threads:", sparsert.default_threads())

rng = np.random.default_rng(0)
w = rng.standard_normal((64, 48)).astype(np.float32)
w[rng.random(w.shape) < 0.9] = 0.0
bias = rng.standard_normal(64).astype(np.float32)
b = sparsert.GraphBuilder("smoke")
y = b.node("Linear", [b.input("x", (-1, 48)), b.constant("w", w, storage="csr"), b.constant("b", bias)],
           {"activation": "relu"})
b.output(y, "y")
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "smoke.spr")
    b.save(path)
    model = sparsert.load(path)
    for batch in (1, 7, 64):
        x = rng.standard_normal((batch, 48)).astype(np.float32)
        want = np.maximum(x @ w.T + bias, 0)
        got = model.run(x)
        assert got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-5), batch
    np.save(os.path.join(tmp, "x.npy"), rng.standard_normal((3, 48)).astype(np.float32))
    cli = subprocess.run([sys.executable, "-m", "sparsert", "inspect", path], capture_output=True, text=True)
    assert cli.returncode == 0 and "Linear" in cli.stdout, cli.stderr
print("wheel smoke test passed")
