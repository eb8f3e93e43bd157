"""The benchmark zoo (benchmarks/zoo.py: ResNet-50, SqueezeNet, DenseNet-121, an Inception-style
net, EfficientNet-B0, a ViT-S/16-style encoder) converts from ONNX and matches onnxruntime, dense
and 90% magnitude-pruned, at batch 1 and 2, on reduced inputs (64x64; the ViT built for 64x64).

Tolerance: max |y - ref| <= 1e-3 * max |ref| (float32 through up to ~150 layers; measured <= 2e-6
at 224x224).
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import sparsert  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import zoo  # noqa: E402

SEED = int(os.environ.get("SPARSERT_TEST_SEED", "1234"))


@pytest.mark.parametrize("name", list(zoo.ZOO))
@pytest.mark.parametrize("sparsity", [0.0, 0.9])
def test_zoo_model_converts_and_matches_onnxruntime(name: str, sparsity: float, tmp_path) -> None:
    print(f"seed {SEED}")
    model = zoo.build(name, seed=SEED)
    if name == "vit_s16":
        torch.manual_seed(SEED)
        model = zoo.ViT(image=64).eval()
    if sparsity:
        zoo.magnitude_prune_(model, sparsity)
        pruned = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)
                  or (isinstance(m, torch.nn.Conv2d) and m.groups == 1 and m.in_channels > 3)]
        assert pruned and all(float((w == 0).float().mean()) >= sparsity - 0.01 for w in pruned)
    shape = (3, 64, 64)
    onnx_path, spr_path = tmp_path / "m.onnx", tmp_path / "m.spr"
    onnx_path.write_bytes(zoo.to_onnx(model, shape, dynamic_batch=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the crossover advice on small layers
        sparsert.convert(onnx_path, spr_path)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    m = sparsert.load(spr_path, threads=2)
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((1, *shape)).astype(np.float32)
    ref = sess.run(None, {"x": x})[0]
    y = m.run(x)
    assert y.shape == ref.shape
    err, scale = float(np.abs(y - ref).max()), float(np.abs(ref).max())
    assert err <= 1e-3 * scale, f"{name} at {sparsity:.0%}: max error {err:.3g} vs max |ref| {scale:.3g}"
    x2 = rng.standard_normal((2, *shape)).astype(np.float32)  # the batch dim stays dynamic
    ref2 = sess.run(None, {"x": x2})[0]
    assert np.abs(m.run(x2) - ref2).max() <= 1e-3 * float(np.abs(ref2).max())


def test_side_by_side_runner_on_a_zoo_model(tmp_path) -> None:
    """The side-by-side driver (one process per library and thread count) on SqueezeNet dense and
    90%: both libraries time both files, outputs agree (its own 1e-3 check), the tables print,
    and --from-json re-prints them from the saved rows."""
    import json
    import subprocess

    models = tmp_path / "models"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", "benchmarks.zoo", str(models), "--models", "squeezenet", "--block", "4"],
                   check=True, env=env, capture_output=True, cwd=tmp_path)
    names = ("squeezenet_s0", "squeezenet_s90", "squeezenet_s90b4")
    assert sorted(p.name for p in models.iterdir()) == [f"{n}.onnx" for n in names]
    results = tmp_path / "rows.jsonl"
    run = subprocess.run([sys.executable, "-m", "benchmarks.peers.side_by_side", "--models", str(models),
                          "--libraries", "sparsert", "onnxruntime", "--threads", "1", "--rounds", "1",
                          "--repeats", "2", "--warmup", "1", "--out", str(tmp_path / "out"),
                          "--json", str(results)],
                         check=True, env=env, capture_output=True, text=True, cwd=tmp_path)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert {(r["library"], r["model"]) for r in rows} == {
        (lib, m) for lib in ("sparsert", "onnxruntime") for m in names}
    assert all(r["median_ms"] > 0 for r in rows)
    assert "| SqueezeNet 1.1 | 1 |" in run.stdout and "onnxruntime / sparsert" in run.stdout
    assert "90% 4x1 blocks" in run.stdout and "sparsert 90% 4x1" in run.stdout
    # the block-pruned file really is pruned in whole 4x1 blocks
    import onnx
    from onnx import numpy_helper

    for init in onnx.load(str(models / "squeezenet_s90b4.onnx")).graph.initializer:
        w = numpy_helper.to_array(init)
        if w.ndim == 4 and w.shape[1] > 3 and w.shape[0] % 4 == 0 and (w == 0).mean() > 0.5:
            tiles = w.reshape(w.shape[0] // 4, 4, -1) != 0
            assert (tiles.all(axis=1) | ~tiles.any(axis=1)).all(), init.name
    again = subprocess.run([sys.executable, "-m", "benchmarks.peers.side_by_side", "--from-json", str(results)],
                           check=True, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert again.stdout == run.stdout
