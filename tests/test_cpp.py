"""The C++ side, driven from pytest so one command runs everything:

* configure + build the library and the GoogleTest suite with CMake, run ctest;
* install to a temporary prefix, build examples/cpp as a separate CMake
  project against the installed package (find_package(sparsert)), run it on a
  model written from Python, and compare with the Python runtime.

Skipped with a message when cmake or a C++ compiler is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sparsert
from conftest import random_sparse

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ["-G", "Ninja"] if shutil.which("ninja") else []


def _run(cmd: list[str], cwd: Path | None = None, timeout: int = 1200) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout\n{proc.stdout[-6000:]}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("cmake") is None:
        pytest.skip("cmake not found: C++ tests need cmake and a C++17 compiler")
    if not (ROOT / "CMakeLists.txt").exists():
        pytest.skip("source tree not available (tests run from an sdist/wheel without CMakeLists.txt)")
    base = Path(os.environ.get("SPARSERT_CPP_BUILD_DIR", tmp_path_factory.mktemp("cpp")))
    build = base / "build"
    prefix = base / "prefix"
    jobs = str(os.cpu_count() or 2)
    _run(["cmake", "-S", str(ROOT), "-B", str(build), *GENERATOR, "-DCMAKE_BUILD_TYPE=Release",
          "-DSPARSERT_BUILD_TESTS=ON", f"-DCMAKE_INSTALL_PREFIX={prefix}"])
    built = _run(["cmake", "--build", str(build), "-j", jobs])
    _run(["cmake", "--install", str(build)])
    return {"build": build, "prefix": prefix, "build_log": built.stdout + built.stderr}


def test_build_has_no_compiler_warnings(cpp_build):
    """The library, the tests and GoogleTest compile without a warning (a fresh build; with
    SPARSERT_CPP_BUILD_DIR reused, only what changed is rebuilt and checked)."""
    warnings = [ln for ln in cpp_build["build_log"].splitlines() if "warning:" in ln]
    assert not warnings, "\n".join(warnings[:20])


def test_cpp_unit_tests(cpp_build):
    build = cpp_build["build"]
    if not (build / "tests" / "cpp").exists():
        pytest.skip("GoogleTest not found at configure time (apt-get install googletest): C++ unit tests skipped")
    proc = _run(["ctest", "--test-dir", str(build), "--output-on-failure", "-j", "2"], timeout=1800)
    print(proc.stdout[-3000:])
    assert "tests passed" in proc.stdout


def test_installed_package_layout(cpp_build):
    prefix = cpp_build["prefix"]
    headers = list((prefix / "include" / "sparsert").glob("*.h"))
    assert [h.name for h in headers] == ["sparsert.h"], "exactly one public header is installed"
    configs = list(prefix.glob("lib*/cmake/sparsert/sparsertConfig.cmake"))
    assert configs, "CMake package config installed"


def test_example_against_installed_package(cpp_build, tmp_path, rng):
    prefix = cpp_build["prefix"]
    example_build = tmp_path / "example"
    _run(["cmake", "-S", str(ROOT / "examples" / "cpp"), "-B", str(example_build), *GENERATOR,
          f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"])
    _run(["cmake", "--build", str(example_build)])
    exe = example_build / "sparsert_run"
    assert exe.exists()

    # a sparse MLP written from Python
    g = sparsert.GraphBuilder("example-mlp")
    x = g.input("x", (-1, 37))
    w1 = random_sparse(rng, (64, 37), 0.9)
    w2 = random_sparse(rng, (10, 64), 0.5)
    h = g.node("Linear", [x, g.constant("w1", w1, storage="csr"), g.constant("b1", rng.standard_normal(64))],
               {"activation": "relu"})
    y = g.node("Linear", [h, g.constant("w2", w2, storage="dense")])
    g.output(g.node("Softmax", [y]), "probs")
    model_path = g.save(tmp_path / "mlp.spr")
    inp = rng.standard_normal((3, 37)).astype(np.float32)
    np.save(tmp_path / "x.npy", inp)
    expected = sparsert.load(model_path).run(inp)

    proc = _run([str(exe), model_path, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--threads", "2"])
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "probs 3 10"
    printed = np.array([float(v) for v in lines[1:]], dtype=np.float32).reshape(3, 10)
    np.testing.assert_allclose(printed, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-6, atol=1e-7)

    # raw input with --shape gives the same answer
    inp.tofile(tmp_path / "x.raw")
    proc = _run([str(exe), model_path, str(tmp_path / "x.raw"), "--shape", "3,37"])
    assert proc.stdout.strip().splitlines()[0] == "probs 3 10"

    # errors are one readable line and exit code 1, never a crash
    bad = tmp_path / "bad.spr"
    bad.write_bytes(Path(model_path).read_bytes()[:100])
    proc = subprocess.run([str(exe), str(bad), str(tmp_path / "x.npy")], capture_output=True, text=True)
    assert proc.returncode == 1 and "sparsert error" in proc.stderr, proc.stderr
    np.save(tmp_path / "wrong.npy", np.zeros((3, 36), np.float32))
    proc = subprocess.run([str(exe), model_path, str(tmp_path / "wrong.npy")], capture_output=True, text=True)
    assert proc.returncode == 1 and "expected [-1, 37]" in proc.stderr, proc.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
