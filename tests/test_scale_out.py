"""Scale-out: a Model pickles (by absolute path with a check of the file's header, or by the
bytes it was loaded from), so worker processes of multiprocessing, Dask or Ray each load their
own copy; examples/dask/score_dataset.py scores a dataset on a LocalCluster and matches the
in-process result."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import child_cwd, child_env

import sparsert

ROOT = Path(__file__).resolve().parent.parent


def _model_bytes(rng: np.random.Generator, features: int = 12, out: int = 5) -> tuple[bytes, np.ndarray]:
    w = rng.standard_normal((out, features)).astype(np.float32)
    w[rng.random(w.shape) < 0.8] = 0.0
    b = sparsert.GraphBuilder("pickled")
    b.output(b.node("Linear", [b.input("x", (-1, features)), b.constant("w", w, storage="csr")]), "y")
    return b.to_bytes(), w


def _run_in_child(model: sparsert.Model, x: np.ndarray) -> np.ndarray:
    return model.run(x)


@pytest.mark.parametrize("how", ["path", "relative path", "bytes"])
def test_model_pickles_and_runs_the_same(tmp_path, rng, monkeypatch, how) -> None:
    blob, w = _model_bytes(rng)
    (tmp_path / "m.spr").write_bytes(blob)
    monkeypatch.chdir(tmp_path)
    if how == "bytes":
        model = sparsert.load_bytes(blob, threads=1)
    else:
        model = sparsert.load(tmp_path / "m.spr" if how == "path" else "m.spr", threads=1)
    x = rng.standard_normal((7, 12)).astype(np.float32)
    copy = pickle.loads(pickle.dumps(model))
    assert copy.threads == 1 and [s.name for s in copy.inputs] == ["x"]
    np.testing.assert_allclose(copy.run(x), x @ w.T, rtol=1e-5, atol=1e-5)
    monkeypatch.chdir(child_cwd())  # a relative path was made absolute when pickled
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).run(x), x @ w.T, rtol=1e-5, atol=1e-5)


def test_model_crosses_a_process_boundary(tmp_path, rng) -> None:
    blob, w = _model_bytes(rng)
    (tmp_path / "m.spr").write_bytes(blob)
    model = sparsert.load(tmp_path / "m.spr", threads=1)
    x = rng.standard_normal((3, 12)).astype(np.float32)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_run_in_child, (model, x))
    np.testing.assert_allclose(got, x @ w.T, rtol=1e-5, atol=1e-5)


def test_unpickling_refuses_a_changed_or_missing_file(tmp_path, rng) -> None:
    blob, _ = _model_bytes(rng)
    path = tmp_path / "m.spr"
    path.write_bytes(blob)
    pickled = pickle.dumps(sparsert.load(path))
    other, _ = _model_bytes(np.random.default_rng(99))
    path.write_bytes(other)  # another model at the same path
    with pytest.raises(ValueError, match="not the file the model was loaded from"):
        pickle.loads(pickled)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="load_bytes"):
        pickle.loads(pickled)


def test_dask_example_scores_a_dataset_on_a_local_cluster(tmp_path, rng) -> None:
    pytest.importorskip("dask.distributed")
    blob, _ = _model_bytes(rng, features=20, out=3)
    (tmp_path / "user.spr").write_bytes(blob)
    script = str(ROOT / "examples" / "dask" / "score_dataset.py")
    for extra in ([], ["--model", str(tmp_path / "user.spr")]):
        proc = subprocess.run(
            [sys.executable, script, "--rows", "9000", "--chunk", "1000", "--workers", "1,2", "--features", "32",
             *extra],
            capture_output=True, text=True, timeout=300, cwd=child_cwd(), env=child_env(),
        )
        print(proc.stdout, proc.stderr[-2000:])
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("this process", "LocalCluster"))]
        assert len(lines) == 3 and all(ln.rstrip().endswith("yes") for ln in lines), proc.stdout
        assert ("32 features" if not extra else "20 features") in proc.stdout
    assert os.listdir(tmp_path) == ["user.spr"]  # the built-in model lives in a temp folder
