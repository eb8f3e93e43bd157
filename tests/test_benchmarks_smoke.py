"""The benchmark suite (benchmarks/) in its quick mode: the harness, not the timings.

* the three emitters of benchmarks/models.py (sparsert, onnxruntime, PyTorch) compute the same
  function for every model and pruning variant, so the suite compares like with like;
* `python -m pytest benchmarks --sparsert-quick` runs every benchmark once and writes a JSON
  whose records carry what report.py needs;
* report.py turns it into the tables and the PNG, and computes speedups and GFLOP/s correctly
  on a run with known medians; bad input is refused with a message.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import sparsert

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _load(name: str) -> ModuleType:
    """A benchmarks/ module by file path: no sys.path change, so `sparsert` stays the one under test."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


models = _load("models")
report = _load("report")

QUICK_VARIANTS = [(0.0, 1.0), (0.9, 1.0), (0.0, 0.5)]  # (unstructured sparsity, inner width)


@pytest.mark.parametrize("sparsity,inner", QUICK_VARIANTS, ids=["u0", "u90", "s50"])
@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_emitters_agree(name: str, sparsity: float, inner: float, seed: int) -> None:
    net = models.magnitude_prune(models.build(name, quick=True, inner=inner), sparsity)
    assert abs(net.weight_sparsity() - sparsity) < 0.01
    x = np.random.default_rng(seed).standard_normal((3, *net.input_shape)).astype(np.float32)
    got = sparsert.load_bytes(models.to_spr(net), threads=1).run(x)
    results = {}
    try:
        import torch

        with torch.inference_mode():
            results["torch"] = models.to_torch(net)(torch.from_numpy(x)).numpy()
    except ImportError:
        pass
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(models.to_onnx(net), providers=["CPUExecutionProvider"])
        results["onnxruntime"] = session.run(None, {net.input_name: x})[0]
    except ImportError:
        pass
    if not results:
        pytest.skip("neither PyTorch nor onnxruntime is installed: nothing to compare with")
    for peer, want in results.items():
        assert got.shape == want.shape, f"{peer}: shape {want.shape}, sparsert {got.shape}"
        scale = float(np.abs(want).max())
        assert scale > 0, f"{peer}: the model's output is all zeros, the comparison would prove nothing"
        err = float(np.abs(got - want).max()) / scale
        assert err < 1e-4, f"{name} sparsity={sparsity} inner={inner}: sparsert vs {peer} differ by {err:.2e}"


def test_magnitude_prune_is_exact_and_keeps_largest(seed: int) -> None:
    net = models.mlp((16, 33, 7), seed=seed)
    before = [w.copy() for w in net.prunable_weights()]
    models.magnitude_prune(net, 0.8)
    for old, new in zip(before, net.prunable_weights()):
        zeros = int(np.count_nonzero(new == 0))
        assert zeros == round(0.8 * old.size)
        kept = np.abs(old[new != 0])
        assert kept.min() >= np.abs(old[new == 0]).max()  # the smallest magnitudes went
        np.testing.assert_array_equal(new[new != 0], old[new != 0])
    with pytest.raises(ValueError, match="sparsity"):
        models.magnitude_prune(net, 1.0)
    with pytest.raises(ValueError, match="unknown benchmark model"):
        models.build("vgg")


def _child_env() -> dict[str, str]:
    # the child imports the same sparsert as this process (in-tree build or installed package)
    env = dict(os.environ)
    parent = str(Path(sparsert.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([parent, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("SPARSERT_BENCH_QUICK", None)
    return env


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    pytest.importorskip(
        "pytest_benchmark", reason="pytest-benchmark is not installed (pip install '.[test]')"
    )
    work = tmp_path_factory.mktemp("bench")
    # a copy, so that neither the repository's sparsert/ nor its .pytest_cache get in the way
    shutil.copytree(BENCH, work / "benchmarks", ignore=shutil.ignore_patterns("__pycache__", "*.json"))
    out = work / "run.json"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "benchmarks",
        "--sparsert-quick",
        f"--benchmark-json={out}",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    proc = subprocess.run(cmd, cwd=work, env=_child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"quick benchmark run failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return work, json.loads(out.read_text())


def test_quick_run_records_everything_report_needs(quick_run: tuple[Path, dict]) -> None:
    _, data = quick_run
    machine = data["machine_info"]
    assert machine["sparsert"]["cpu_features"] == sparsert.cpu_features()
    assert machine["sparsert"]["cache_sizes"] == sparsert.cache_sizes()
    assert machine["benchmark_mode"] == "quick"
    assert "openblas_env" in machine and "threadpoolctl" in machine and "libraries" in machine
    names = {b["name"] for b in data["benchmarks"]}
    # every sparsert benchmark ran (peers may be skipped when not installed)
    for shape in ("16x32x1", "24x16x9", "8x40x5"):
        for s in (0, 90):
            assert f"bench_layer_sparse[{shape}-s{s}-sparsert]" in names
        assert f"bench_layer_dense[{shape}-dense-numpy]" in names
    for name in models.MODEL_NAMES:
        for batch in (1, 2):
            for variant in ("u0", "u90", "s50"):
                assert f"bench_model[{name}-b{batch}-t1-sparsert-{variant}]" in names
    for bench in data["benchmarks"]:
        info, stats = bench["extra_info"], bench["stats"]
        assert stats["rounds"] == 1 and stats["median"] > 0, bench["name"]
        assert info["kind"] in ("layer", "model") and info["library"], bench["name"]
        if info["kind"] == "layer":
            assert info["dense_flop"] == 2 * info["M"] * info["K"] * info["N"]
            assert info["useful_flop"] == 2 * info["nnz"] * info["N"]
            if info["sparsity"] is not None:
                assert info["nnz"] == info["M"] * info["K"] - round(info["sparsity"] * info["M"] * info["K"])
        elif info["library"] == "sparsert":
            assert 0 < info["flop"] <= info["dense_flop"]
            if info["variant"] == "u90":
                assert abs(info["sparsity"] - 0.9) < 0.01


def test_report_renders_the_quick_run(quick_run: tuple[Path, dict]) -> None:
    work, _ = quick_run
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.report", "run.json", "--out", "out/quick"],
        cwd=work,
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    text = (work / "out" / "quick.md").read_text()
    assert "## Layer level" in text and "## Model level" in text
    assert "| 16×32×1 | 90% |" in text
    assert "| resnet18 | 1 | 1 | s50 | 50% structured (shrunk) |" in text
    if importlib.util.find_spec("matplotlib") is not None:
        png = (work / "out" / "quick.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    else:
        assert "matplotlib is not installed" in proc.stderr


def _bench(name: str, median: float, **info: object) -> dict:
    return {"name": name, "stats": {"median": median, "rounds": 5}, "extra_info": info}


def test_report_arithmetic_on_known_medians(tmp_path: Path) -> None:
    m, k, n = 100, 200, 10
    nnz = 2000  # 90% sparse
    layer = {"kind": "layer", "M": m, "K": k, "N": n, "dense_flop": 2 * m * k * n, "threads": 1}
    model = {"kind": "model", "model": "mlp", "batch": 1, "threads": 2}
    run = {
        "machine_info": {"cpu": {"brand_raw": "Test CPU"}, "sparsert": {"cpu_features": "x86-64 avx2"}},
        "benchmarks": [
            _bench("np", 4e-6, **layer, library="numpy", sparsity=None, nnz=m * k, useful_flop=2 * m * k * n),
            _bench(
                "sp",
                1e-6,
                **layer,
                library="sparsert",
                sparsity=0.9,
                nnz=nnz,
                useful_flop=2 * nnz * n,
                storage="csr (linear)",
            ),
            _bench("sc", 8e-6, **layer, library="scipy_csr", sparsity=0.9, nnz=nnz, useful_flop=2 * nnz * n),
            _bench("m0", 2e-3, **model, library="sparsert", variant="u0", sparsity=0.0, flop=10**9),
            _bench("m9", 5e-4, **model, library="sparsert", variant="u90", sparsity=0.9, flop=10**8),
            _bench("ort", 3e-3, **model, library="onnxruntime", variant="dense", sparsity=0.0),
            {"name": "foreign", "stats": {"median": 1.0}, "extra_info": {}},  # not ours: ignored
        ],
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    records, machine = report.load_run(str(path))
    assert len(records) == 6
    (row,) = report.layer_rows(records)
    assert row["useful_gflops"] == pytest.approx(2 * nnz * n / 1e-6 / 1e9)  # 40 GFLOP/s
    assert row["effective_gflops"] == pytest.approx(2 * m * k * n / 1e-6 / 1e9)  # 400 GFLOP/s
    table = report.layer_table([row])
    assert "| 100×200×10 | 90% | 1 | csr (linear) | 40.0 | 400.0 | 4.00× | 0.50× | — | — | 4 |" in table
    rows = report.model_rows(records)
    assert [r["variant"] for r in rows] == ["u0", "u90"]
    text = report.model_table(rows)
    assert "| mlp | 1 | 2 | u90 | 90% | 0.1 | 0.5 | 4.00× | 3 | 6.00× | — | — |" in text
    assert "| mlp | 1 | 2 | u0 | 0% | 1 | 2 | 1.00× | 3 | 1.50× | — | — |" in text
    assert "Test CPU" in report.machine_summary(machine)
    assert report.main([str(path), "--out", str(tmp_path / "r"), "--no-plot"]) == 0
    assert (tmp_path / "r.md").exists() and not (tmp_path / "r.png").exists()


def test_report_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no such file"):
        report.load_run(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="is not JSON"):
        report.load_run(str(bad))
    bad.write_text(json.dumps({"machine_info": {}}))
    with pytest.raises(SystemExit, match="no 'benchmarks' list"):
        report.load_run(str(bad))


def test_block_sparsity_benchmark_quick(tmp_path: Path) -> None:
    """benchmarks/block_sparsity.py --quick: both parts run and print their tables (the layer
    table with every variant, the digits table with both pruning kinds); the timings are not
    checked (no wall-clock assertions)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "benchmarks.block_sparsity", "--quick"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "| sparsity | unstructured forced | unstructured auto | 4x1 forced | 4x1 auto |" in out
    assert "### BERT Linear 768->768, seq 128" in out and "### ResNet-18 3x3 128->128, 28x28" in out
    assert "| sparsity | unstructured accuracy | 4x1 accuracy | unstructured ms | 4x1 ms |" in out
    assert "| 90% |" in out and "CPU:" in out


def test_budget_prune_benchmark_quick(tmp_path: Path) -> None:
    """benchmarks/budget_prune.py --quick, digits part: every method is pruned, fine-tuned, timed
    together and compared at the budget plans' speed, and the plot is written; the timings and
    accuracies are not checked (no wall-clock assertions)."""
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               SPARSERT_CACHE_DIR=str(tmp_path / "cache"))
    run = subprocess.run([sys.executable, "-m", "benchmarks.budget_prune", "--quick", "--skip", "random", "structured",
                          "--plot", "digits.png"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "CPU:" in out and "all timed together" in out
    for name in ("uniform per layer", "global threshold"):
        assert out.count(name) >= 2, out  # both operating points of the quick mode
    assert "at the budget plans' measured speed" in out
    assert (tmp_path / "digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
