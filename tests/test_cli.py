"""The `sparsert` command: convert / inspect / run / bench on small models made here.

In-process calls (`sparsert.cli.main([...])`) check results; subprocess calls
(`python -m sparsert ...`) check what a user sees: exit status and stderr lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import child_cwd, child_env, random_sparse

import sparsert
from sparsert import cli

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


def sparsert_cmd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sparsert", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=child_cwd(),
        env=child_env(),
    )


def stderr_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


# --------------------------------------------------------------------------- models made here


class MLP(torch.nn.Module):
    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(n_in, hidden)
        self.fc2 = torch.nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture
def onnx_mlp(tmp_path: Path, seed: int) -> tuple[str, MLP]:
    """An ONNX MLP 16 -> 24 -> 5 with a symbolic batch dim."""
    torch.manual_seed(seed)
    model = MLP(16, 24, 5).eval()
    path = str(tmp_path / "mlp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated
        torch.onnx.export(
            model,
            (torch.randn(2, 16),),
            path,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    return path, model


def _sparse_mlp(
    tmp_path: Path, rng: np.random.Generator, metadata: dict[str, str] | None = None
) -> tuple[str, dict]:
    """A .spr MLP 13 -> 17 (CSR, 80 % zeros) -> 9 (dense) -> 6 (all zeros, CSR), free batch."""
    w1 = random_sparse(rng, (17, 13), 0.8)
    w2 = rng.standard_normal((9, 17)).astype(np.float32)
    w3 = np.zeros((6, 9), np.float32)
    b1 = rng.standard_normal(17).astype(np.float32)
    b3 = rng.standard_normal(6).astype(np.float32)
    b = sparsert.GraphBuilder("sparse_mlp", metadata=metadata)
    x = b.input("x", (-1, 13))
    h = b.node(
        "Linear",
        [x, b.constant("fc1.w", w1, storage="csr"), b.constant("fc1.b", b1)],
        {"activation": "relu"},
        name="fc1",
    )
    h = b.node("Linear", [h, b.constant("fc2.w", w2, storage="dense"), None], name="fc2")
    y = b.node("Linear", [h, b.constant("fc3.w", w3, storage="csr"), b.constant("fc3.b", b3)], name="fc3")
    b.output(y, "logits")
    path = str(tmp_path / "sparse_mlp.spr")
    b.save(path)
    return path, {"w1": w1, "b1": b1, "w2": w2, "w3": w3, "b3": b3}


def _reference(x: np.ndarray, w: dict) -> np.ndarray:
    h = np.maximum(x.astype(np.float64) @ w["w1"].T + w["b1"], 0)
    h = h @ w["w2"].T
    return h @ w["w3"].T + w["b3"]


def _two_in_two_out(tmp_path: Path, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """inputs a, b (any x 7): outputs sum = a + b and proj = Linear(a)."""
    w = rng.standard_normal((3, 7)).astype(np.float32)
    gb = sparsert.GraphBuilder("two")
    a = gb.input("a", (-1, 7))
    b = gb.input("b", (-1, 7))
    gb.output(gb.node("Add", [a, b], name="add"), "sum")
    gb.output(gb.node("Linear", [a, gb.constant("w", w), None], name="proj"), "proj")
    path = str(tmp_path / "two.spr")
    gb.save(path)
    return path, w


# --------------------------------------------------------------------------- help and usage


@pytest.mark.parametrize("sub", ["", "convert", "inspect", "run", "bench", "demo"])
def test_help(sub: str) -> None:
    proc = sparsert_cmd(*([sub] if sub else []), "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: sparsert" in proc.stdout
    expected = {
        "": "convert",
        "convert": "--input-shape",
        "inspect": "--json",
        "run": "--output",
        "bench": "--vs",
        "demo": "--quick",
    }[sub]
    assert expected in proc.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["run", "m.spr"], "--input"),
        (["bench", "m.spr", "--threads", "-1"], "integer >= 0"),
        (["bench", "m.spr", "--repeats", "two"], "positive integer"),
        (["convert", "m.onnx", "-o", "m.spr", "--prune", "magnitude"], "METHOD:SPARSITY"),
        (["convert", "m.onnx", "-o", "m.spr", "--input-shape", "x=1,a"], "integers"),
        (["convert", "m.onnx", "-o", "m.spr", "--storage", "coo"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], needle: str) -> None:
    proc = sparsert_cmd(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = stderr_lines(proc)
    assert len(lines) == 1, lines
    assert "error" in lines[0] and needle in lines[0], lines


def test_failure_exit_1_one_line_and_verbose_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.spr"
    bad.write_bytes(b"NOPE" + bytes(100))
    proc = sparsert_cmd("inspect", str(bad))
    assert proc.returncode == 1
    lines = stderr_lines(proc)
    assert len(lines) == 1, lines
    assert lines[0].startswith("sparsert inspect: error:") and "magic" in lines[0].lower(), lines

    proc = sparsert_cmd("inspect", str(bad), "--verbose")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert stderr_lines(proc)[-1] == lines[0]
    # --verbose before the subcommand works too
    assert "Traceback" in sparsert_cmd("-v", "inspect", str(bad)).stderr

    proc = sparsert_cmd("run", str(tmp_path / "missing.spr"), "--input", "x.npy")
    assert proc.returncode == 1
    assert stderr_lines(proc) == [
        f"sparsert run: error: no such .spr file: {str(tmp_path / 'missing.spr')!r}"
    ]


# --------------------------------------------------------------------------- convert


def test_convert_inspect_run(tmp_path: Path, onnx_mlp: tuple[str, MLP], rng: np.random.Generator) -> None:
    onnx_path, model = onnx_mlp
    spr_path = str(tmp_path / "mlp.spr")

    # the symbolic batch stays free: one file runs any batch
    proc = sparsert_cmd("convert", onnx_path, "-o", spr_path)
    assert proc.returncode == 0, proc.stderr
    assert "dynamic dims: x[batch]" in proc.stdout
    free = sparsert.load(spr_path)
    assert free.inputs[0].shape == (-1, 16) and free.inputs[0].dim_names == ("batch", "")
    for n in (1, 5):
        xn = rng.standard_normal((n, 16)).astype(np.float32)
        with torch.no_grad():
            np.testing.assert_allclose(free.run(xn), model(torch.from_numpy(xn)).numpy(), rtol=1e-4, atol=1e-5)

    proc = sparsert_cmd("convert", onnx_path, "-o", spr_path, "--input-shape", "x=3,16")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {spr_path}" in proc.stdout and "2 layer weights" in proc.stdout
    loaded = sparsert.load(spr_path)
    assert loaded.inputs[0].shape == (3, 16)

    proc = sparsert_cmd("inspect", spr_path)
    assert proc.returncode == 0, proc.stderr
    for needle in ("x: float32[3x16]", "Linear", "total", "kernel", "sparsert.producer", "sparsert.convert"):
        assert needle in proc.stdout, needle

    x = rng.standard_normal((3, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    out = tmp_path / "y.npy"
    proc = sparsert_cmd(
        "run", spr_path, "--input", str(tmp_path / "x.npy"), "--output", str(out), "--threads", "1"
    )
    assert proc.returncode == 0, proc.stderr
    got = np.load(out)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

    # without --output: one summary line per output, with its shape and argmax
    proc = sparsert_cmd("run", spr_path, "--input", str(tmp_path / "x.npy"))
    assert proc.returncode == 0, proc.stderr
    assert "y: float32[3x5]" in proc.stdout
    assert f"argmax(last dim) {expected.argmax(1).tolist()}" in proc.stdout

    # a wrong input shape is a failure that names the input
    np.save(tmp_path / "x_bad.npy", x[:, :15])
    proc = sparsert_cmd("run", spr_path, "--input", str(tmp_path / "x_bad.npy"))
    assert proc.returncode == 1
    lines = stderr_lines(proc)
    assert len(lines) == 1 and "'x'" in lines[0] and "(3, 15)" in lines[0], lines


def test_convert_prune_and_storage(
    tmp_path: Path, onnx_mlp: tuple[str, MLP], capsys: pytest.CaptureFixture
) -> None:
    onnx_path, _ = onnx_mlp
    pruned = str(tmp_path / "pruned.spr")
    args = ["convert", onnx_path, "-o", pruned, "--input-shape", "x=1,16", "--prune", "magnitude:0.9"]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert "2 sparse" in captured.out
    # the converter's accuracy warning is one line on stderr
    assert [line.startswith("sparsert convert: warning:") for line in captured.err.splitlines()] == [True]
    assert "fine-tun" in captured.err
    assert cli.main(["inspect", pruned, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    layers = [n for n in data["nodes"] if n["op"] == "Linear"]
    assert len(layers) == 2
    for n in layers:
        assert n["weight_storage"] == "csr"
        assert n["sparsity"] == pytest.approx(0.9, abs=0.02)
        assert n["weight_nnz"] == round(n["weight_elements"] * (1 - n["sparsity"]))

    dense = str(tmp_path / "dense.spr")
    assert cli.main(["convert", onnx_path, "-o", dense, "--input-shape", "x=1,16", "--storage", "dense"]) == 0
    capsys.readouterr()
    assert cli.main(["inspect", dense, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [n["weight_storage"] for n in data["nodes"] if n["op"] == "Linear"] == ["dense", "dense"]
    assert data["totals"]["sparsity"] == 0.0


# --------------------------------------------------------------------------- inspect


def test_inspect_counts(tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture) -> None:
    path, w = _sparse_mlp(tmp_path, rng, metadata={"export.shrunk": "fc2 12->9", "note": "made in test"})
    assert cli.main(["inspect", path, "--json", "--input-shape", "x=5,13"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"] == [{"name": "x", "shape": [-1, 13], "dtype": "float32", "dim_names": ["", ""]}]
    assert data["outputs"][0]["name"] == "logits"
    assert data["metadata"]["note"] == "made in test"
    nodes = {n["name"]: n for n in data["nodes"]}
    assert list(nodes) == ["fc1", "fc2", "fc3"]
    assert nodes["fc1"]["weight_storage"] == "csr"
    assert nodes["fc1"]["weight_nnz"] == np.count_nonzero(w["w1"])
    assert nodes["fc1"]["sparsity"] == pytest.approx(1 - np.count_nonzero(w["w1"]) / w["w1"].size)
    assert nodes["fc2"]["weight_storage"] == "dense" and nodes["fc2"]["sparsity"] == 0.0
    assert nodes["fc2"]["shrunk"] == "12->9" and nodes["fc1"]["shrunk"] is None
    assert nodes["fc3"]["weight_nnz"] == 0 and nodes["fc3"]["sparsity"] == 1.0
    assert nodes["fc1"]["output_shapes"] == [[5, 17]]
    assert nodes["fc2"]["dense_flops"] == 2 * 5 * 17 * 9
    for n in nodes.values():
        assert n["kernel"]
    total_nnz = np.count_nonzero(w["w1"]) + np.count_nonzero(w["w2"])
    assert data["totals"]["weight_nnz"] == total_nnz
    assert data["totals"]["nodes"] == 3

    assert cli.main(["inspect", path]) == 0
    text = capsys.readouterr().out
    assert "shrunk 12->9" in text and "100.0%" in text and "made in test" in text


def test_inspect_marks_layers_the_exporter_shrunk(
    tmp_path: Path, seed: int, capsys: pytest.CaptureFixture
) -> None:
    sp = pytest.importorskip("sparsert.prune")
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 5 * 5, 4),
    )
    x = torch.randn(1, 2, 5, 5)
    sp.structured_prune(model, 0.5, x, criterion="l1")
    path = str(tmp_path / "shrunk.spr")
    result = sparsert.export(model, x, path)
    assert result.shrunk_layers == {"0": (8, 4), "2": (6, 3)}
    assert cli.main(["inspect", path, "--json"]) == 0
    nodes = {
        n["op"] + ":" + str(n["weight_shape"][:1]): n for n in json.loads(capsys.readouterr().out)["nodes"]
    }
    assert nodes["Conv:[4]"]["shrunk"] == "8->4"
    assert nodes["Conv:[3]"]["shrunk"] == "6->3"
    assert nodes["Linear:[4]"]["shrunk"] is None
    assert cli.main(["inspect", path]) == 0
    assert capsys.readouterr().out.count("dense shrunk ") == 2


def test_inspect_bad_input_shape_name(tmp_path: Path, rng: np.random.Generator) -> None:
    path, _ = _sparse_mlp(tmp_path, rng)
    proc = sparsert_cmd("inspect", path, "--input-shape", "y=1,13")
    assert proc.returncode == 2
    lines = stderr_lines(proc)
    assert len(lines) == 1 and "'y'" in lines[0] and "['x']" in lines[0], lines


# --------------------------------------------------------------------------- run


@pytest.mark.parametrize("batch", [1, 4])
def test_run_matches_reference(
    tmp_path: Path, rng: np.random.Generator, batch: int, capsys: pytest.CaptureFixture
) -> None:
    path, w = _sparse_mlp(tmp_path, rng)
    x = rng.standard_normal((batch, 13))
    # float64 is refused with the fix, as the Python API refuses it: one rule for both
    np.save(tmp_path / "x64.npy", x)
    assert cli.main(["run", path, "-i", str(tmp_path / "x64.npy")]) == 1
    assert "astype(np.float32)" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    assert cli.main(["run", path, "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz")]) == 0
    with np.load(tmp_path / "y.npz") as z:
        assert z.files == ["logits"]
        np.testing.assert_allclose(z["logits"], _reference(x.astype(np.float32), w), rtol=1e-5, atol=1e-5)


def test_run_npz_many_inputs_and_outputs(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture
) -> None:
    path, w = _two_in_two_out(tmp_path, rng)
    a = rng.standard_normal((2, 7)).astype(np.float32)
    b = rng.standard_normal((2, 7)).astype(np.float32)
    np.savez(tmp_path / "in.npz", b=b, a=a)
    assert (
        cli.main(["run", path, "--input", str(tmp_path / "in.npz"), "--output", str(tmp_path / "out.npz")])
        == 0
    )
    with np.load(tmp_path / "out.npz") as z:
        assert sorted(z.files) == ["proj", "sum"]
        np.testing.assert_allclose(z["sum"], a + b, rtol=1e-6)
        np.testing.assert_allclose(z["proj"], a @ w.T, rtol=1e-5, atol=1e-5)
    capsys.readouterr()
    assert cli.main(["run", path, "--input", str(tmp_path / "in.npz")]) == 0
    text = capsys.readouterr().out
    assert "sum: float32[2x7]" in text and "proj: float32[2x3]" in text

    # .npy for a two-input model, or for two outputs: usage errors naming the fix
    np.save(tmp_path / "a.npy", a)
    assert cli.main(["run", path, "--input", str(tmp_path / "a.npy")]) == 2
    assert ".npz" in capsys.readouterr().err
    assert cli.main(["run", path, "--input", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.npy")]) == 2
    assert ".npz" in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()
    # a missing input in the .npz is a failure naming it
    np.savez(tmp_path / "half.npz", a=a)
    assert cli.main(["run", path, "--input", str(tmp_path / "half.npz")]) == 1
    err = capsys.readouterr().err
    assert "missing ['b']" in err and len(err.strip().splitlines()) == 1
    # not an array file
    (tmp_path / "junk.npz").write_bytes(b"junk")
    assert cli.main(["run", path, "--input", str(tmp_path / "junk.npz")]) == 1
    assert "cannot read" in capsys.readouterr().err


# --------------------------------------------------------------------------- bench


def test_bench(tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture) -> None:
    path, _ = _sparse_mlp(tmp_path, rng)
    assert cli.main(["bench", path, "--repeats", "3", "--warmup", "1", "--threads", "1", "--batch", "4"]) == 0
    text = capsys.readouterr().out
    assert "inputs 4x13, 1 threads" in text
    for needle in ("median ms", "min ms", "max ms", "fc1", "fc3", "kernel", "sparsert"):
        assert needle in text, needle

    assert cli.main(["bench", path, "--repeats", "4", "--warmup", "0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    s = data["sparsert"]
    assert 0 < s["min_ms"] <= s["median_ms"] <= s["max_ms"]
    assert data["input_shapes"] == [[1, 13]]
    assert [layer["name"] for layer in data["layers"]] == ["fc1", "fc2", "fc3"]
    assert all(layer["time_ms"] is not None and layer["time_ms"] >= 0 for layer in data["layers"])
    assert "onnxruntime" not in data


def test_bench_vs_onnxruntime(
    tmp_path: Path, onnx_mlp: tuple[str, MLP], capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("onnxruntime")
    onnx_path, _ = onnx_mlp
    spr_path = str(tmp_path / "mlp.spr")
    assert cli.main(["convert", onnx_path, "-o", spr_path, "--input-shape", "x=2,16"]) == 0
    capsys.readouterr()
    assert (
        cli.main(
            [
                "bench",
                spr_path,
                "--vs",
                onnx_path,
                "--repeats",
                "3",
                "--warmup",
                "1",
                "--threads",
                "1",
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["onnxruntime"]["median_ms"] > 0
    assert data["speedup_vs_onnxruntime"] == pytest.approx(
        data["onnxruntime"]["median_ms"] / data["sparsert"]["median_ms"]
    )
    # same dense model, same inputs: the two runtimes agree
    assert data["max_rel_diff_vs_onnxruntime"] < 1e-5
    assert cli.main(["bench", spr_path, "--vs", onnx_path, "--repeats", "2", "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    # a verdict, or the flag that the machine was too noisy for one
    assert "onnxruntime" in text and ("faster" in text or "slower" in text or "NOISY" in text)

    # the converted model has a frozen batch of 2: --batch 8 is refused, saying how to keep it free
    assert cli.main(["bench", spr_path, "--batch", "8"]) == 2
    err = capsys.readouterr().err
    assert "fixed batch of 2" in err and "without --input-shape" in err and len(err.strip().splitlines()) == 1


def test_bench_vs_without_onnxruntime(
    tmp_path: Path,
    onnx_mlp: tuple[str, MLP],
    rng: np.random.Generator,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    onnx_path, _ = onnx_mlp
    path, _ = _sparse_mlp(tmp_path, rng)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    assert cli.main(["bench", path, "--vs", onnx_path, "--repeats", "2", "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    assert "onnxruntime is not installed" in text and "skipping --vs" in text


def test_python_dash_m_and_entry_point() -> None:
    proc = sparsert_cmd("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"sparsert {sparsert.__version__}"
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert 'sparsert = "sparsert.cli:main"' in pyproject.read_text()
