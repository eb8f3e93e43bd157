"""Regression tests for crafted, checksum-valid model files and hostile inputs (issue 12).

Each case once crashed, hung, leaked heap memory into outputs or allocated without bound.
Each must now end in a clear exception naming the problem, or in the correct result.
Files are built with GraphBuilder (valid CRC), so they get past the byte-level checks.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import textwrap
import zipfile
from typing import Any

import numpy as np
import pytest

import sparsert
from sparsert.cli import main as cli_main


def _load(b: sparsert.GraphBuilder, **kw: Any) -> sparsert.Model:
    return b.load(**kw)


def _one_node(op: str, x_shape: tuple[int, ...], attrs: dict[str, Any], consts: list[Any] = (),
              storage: str = "dense", x_dtype: str = "float32") -> sparsert.GraphBuilder:
    b = sparsert.GraphBuilder("hostile")
    x = b.input("x", x_shape, dtype=x_dtype)
    cs = [b.constant(f"c{i}", c, storage=storage) for i, c in enumerate(consts)]
    b.output(b.node(op, [x, *cs], attrs))
    return b


# --------------------------------------------------------------------------- 1. pooling attributes


@pytest.mark.parametrize(
    "op,attrs",
    [
        ("MaxPool", {"kernel_shape": [2**32 + 1, 2]}),
        ("MaxPool", {"kernel_shape": [2, 2], "dilations": [3 * 2**61, 3 * 2**61],
                     "pads": [3 * 2**61] * 4}),
        ("AveragePool", {"kernel_shape": [2**62, 2**62]}),
        ("MaxPool", {"kernel_shape": [2, 2], "strides": [2**62, 1]}),
        ("MaxPool", {"kernel_shape": [2, 2], "pads": [-1, 0, 0, 0]}),
    ],
)
def test_pool_attributes_out_of_range_are_refused(op: str, attrs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="MaxPool|AveragePool|kernel_shape|dilations|pads|strides"):
        _one_node(op, (1, 1, 8, 8), attrs).load()


# --------------------------------------------------------------------------- 2. int and CSR constants


def test_softmax_reshape_flatten_on_integer_constants() -> None:
    # view ops on an integer constant give the right integers; Softmax refuses them by dtype
    ints = np.arange(12, dtype=np.int64).reshape(3, 4)
    b = sparsert.GraphBuilder("ints")
    x = b.input("x", (3, 4))
    c = b.constant("c", ints)
    shape = b.constant("shape", np.array([4, 3], dtype=np.int64))
    b.output(b.node("Reshape", [c, shape]), "r")
    b.output(b.node("Flatten", [c], {"axis": 0}), "f")
    b.output(b.node("Relu", [x]), "y")
    got = b.load().run(np.zeros((3, 4), np.float32), as_dict=True)
    np.testing.assert_array_equal(got["r"], ints.reshape(4, 3))
    np.testing.assert_array_equal(got["f"], ints.reshape(1, 12))
    for dtype in (np.int32, np.int64):
        b = sparsert.GraphBuilder("softmax_int")
        b.input("x", (3, 4))
        b.output(b.node("Softmax", [b.constant("c", ints.astype(dtype))], {"axis": -1}))
        with pytest.raises(ValueError, match=r"(?i)softmax.*(int|float32)"):
            b.load()


@pytest.mark.parametrize("op,attrs", [("Softmax", {"axis": -1}), ("Reshape", {}), ("Flatten", {"axis": 1})])
def test_ops_given_a_csr_constant_refuse_it(op: str, attrs: dict[str, Any]) -> None:
    w = np.zeros((4, 6), np.float32)
    w[1, 2] = 1.0
    b = sparsert.GraphBuilder("csr_in")
    b.input("x", (4, 6))
    ins = [b.constant("w", w, storage="csr")]
    if op == "Reshape":
        ins.append(b.constant("shape", np.array([6, 4], dtype=np.int64)))
    b.output(b.node(op, ins, attrs))
    with pytest.raises(ValueError, match="sparse|CSR"):
        b.load()


# --------------------------------------------------------------------------- 3. wrapped zero sizes


def test_resize_of_an_empty_tensor_with_huge_dims() -> None:
    # Split to width 0, Reshape to [1, 0, 2^32, 2^32]: the other dims multiply to 2^64 (0 mod 2^64)
    b = sparsert.GraphBuilder("wrap0")
    x = b.input("x", (1, 4))
    part, _ = b.node("Split", [x], {"axis": 1, "split": [0, 4]}, outputs=2)
    shape = b.constant("shape", np.array([1, 0, 2**32, 2**32], dtype=np.int64))
    r = b.node("Reshape", [part, shape])
    b.output(b.node("Resize", [r], {"scales": [2.0, 2.0]}))
    try:
        m = b.load()
    except (ValueError, MemoryError) as e:  # the planner bounds every dim and element count
        assert "size" in str(e) or "dim" in str(e), e
        return
    y = m.run(np.ones((1, 4), np.float32))
    assert y.size == 0 and y.shape == (1, 0, 2**33, 2**33)


# --------------------------------------------------------------------------- 4. K = 0


@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_linear_with_zero_input_features_returns_the_bias(storage: str) -> None:
    b = sparsert.GraphBuilder("k0")
    x = b.input("x", (3, 4))
    empty, _ = b.node("Split", [x], {"axis": 1, "split": [0, 4]}, outputs=2)  # [3, 0]
    w = b.constant("w", np.zeros((5, 0), np.float32), storage=storage)
    bias = np.arange(5, dtype=np.float32) - 2
    b.output(b.node("Linear", [empty, w, b.constant("b", bias)]))
    y = b.load().run(np.ones((3, 4), np.float32))
    np.testing.assert_array_equal(y, np.broadcast_to(bias, (3, 5)))


# --------------------------------------------------------------------------- 5. file changed after load


def _sparse_model(rng: np.random.Generator) -> sparsert.GraphBuilder:
    w = rng.standard_normal((64, 32)).astype(np.float32)
    w[rng.random(w.shape) < 0.9] = 0
    b = sparsert.GraphBuilder("mlp")
    x = b.input("x", (-1, 32))
    h = b.node("Linear", [x, b.constant("w", w, storage="csr"), b.constant("b", rng.standard_normal(64))],
               {"activation": "relu"})
    b.output(h)
    return b


@pytest.mark.parametrize("change", ["truncate", "rewrite", "delete", "replace"])
def test_default_load_survives_the_file_changing(tmp_path: Any, rng: np.random.Generator, change: str) -> None:
    path = str(tmp_path / "m.spr")
    _sparse_model(rng).save(path)
    m = sparsert.load(path)
    x = rng.standard_normal((4, 32)).astype(np.float32)
    before = m.run(x)
    size = os.path.getsize(path)
    if change == "truncate":
        os.truncate(path, 16)
    elif change == "rewrite":  # in place, same size: what a copy over the file does
        with open(path, "r+b") as f:
            f.write(b"\xff" * size)
    elif change == "delete":
        os.remove(path)
    else:
        other = rng.standard_normal((64, 32)).astype(np.float32)
        b = sparsert.GraphBuilder("other")
        b.output(b.node("Linear", [b.input("x", (-1, 32)), b.constant("w", other), b.constant("b", np.zeros(64))]))
        b.save(path)
    np.testing.assert_array_equal(m.run(x), before)


# --------------------------------------------------------------------------- 6. runtime domain in ONNX


def test_onnx_nodes_in_the_runtime_domain_are_refused(tmp_path: Any) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("MaxPool", ["x"], ["y"], domain="spr", kernel_shape=[2, 2],
                            dilations=[3 * 2**61, 3 * 2**61])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("spr", 1)])
    src = str(tmp_path / "m.onnx")
    onnx.save(model, src)
    with pytest.raises(ValueError, match="spr"):
        sparsert.convert(src, str(tmp_path / "m.spr"), verify=True)
    assert not os.path.exists(tmp_path / "m.spr")


@pytest.mark.parametrize("opset", [1, 5, 99])
def test_onnx_opsets_the_converter_does_not_know_are_refused(tmp_path: Any, opset: int) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    with pytest.raises(sparsert.UnsupportedError, match=f"opset {opset}"):
        sparsert.onnx.convert_model(model)


def test_onnx_validation_error_is_a_format_error(tmp_path: Any) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    # a node reads a tensor nothing produces: onnx.checker raises ValidationError
    graph = helper.make_graph([helper.make_node("Relu", ["missing"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(sparsert.FormatError):
        sparsert.onnx.convert_model(model)


# --------------------------------------------------------------------------- 7. FIFO, 8. threads


def _run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    # a fresh interpreter, so a hang is a timeout (a failure) rather than a stuck test run
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=os.path.dirname(os.path.abspath(__file__)) + "/..")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_loading_a_fifo_is_an_error_not_a_hang(tmp_path: Any) -> None:
    fifo = str(tmp_path / "model.spr")
    os.mkfifo(fifo)
    proc = _run_python(f"""
        import sparsert
        try:
            sparsert.load({fifo!r})
        except (ValueError, OSError) as e:
            print("ERR", e)
        from sparsert.cli import main
        print("RC", main(["inspect", {fifo!r}]))
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ERR" in proc.stdout and "regular file" in proc.stdout, proc.stdout
    assert "RC 1" in proc.stdout


def test_thread_count_is_bounded(rng: np.random.Generator) -> None:
    b = _sparse_model(rng)
    limit = sparsert._native.core().max_threads
    with pytest.raises(ValueError, match=f"threads must be an integer in \\[0, {limit}\\]"):
        b.load(threads=10000)
    with pytest.raises(ValueError, match="threads"):
        b.load(threads=-1)
    # 0 and None: every usable core (as C++'s LoadOptions::threads = 0 and onnxruntime's 0)
    assert b.load(threads=0).threads == b.load().threads == sparsert.default_threads()
    # more than the usable cores: capped to them, with a warning (oversubscribing only slows runs)
    with pytest.warns(UserWarning, match="more than the"):
        assert b.load(threads=sparsert.default_threads() + 5).threads == sparsert.default_threads()


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS semantics")
def test_many_threads_under_a_tight_address_space_cap_or_fail_cleanly(tmp_path: Any, rng: np.random.Generator) -> None:
    path = str(tmp_path / "m.spr")
    _sparse_model(rng).save(path)
    # address space for the interpreter and the model, not for 200 threads with 8 MiB stacks
    proc = _run_python(f"""
        import resource, numpy as np, sparsert
        sparsert._native.core()
        used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + 256 * 2**20, resource.RLIM_INFINITY))
        try:
            m = sparsert.load({path!r}, threads=200)  # capped to the usable cores
            m.run(np.ones((64, 32), np.float32))
            print("RAN")
        except (RuntimeError, MemoryError, OSError) as e:
            print("ERR", type(e).__name__, e)
    """, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RAN" in proc.stdout or ("ERR" in proc.stdout and "thread" in proc.stdout.lower()), proc.stdout


# --------------------------------------------------------------------------- 10. byte budgets


def test_convert_refuses_huge_constant_folds(tmp_path: Any) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    # a 200-byte file whose ConstantOfShape would fold to 4 GiB
    shape = numpy_helper.from_array(np.array([2**15, 2**15], dtype=np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"],
                              value=numpy_helper.from_array(np.array([1.0], np.float32))),
             helper.make_node("Add", ["x", "big"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2**15])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    src = str(tmp_path / "m.onnx")
    onnx.save(model, src)
    assert os.path.getsize(src) < 1024
    try:
        sparsert.convert(src, str(tmp_path / "m.spr"), verify=False)
    except ValueError as e:
        # refused, or kept as a run-time op: never folded into a 4 GiB constant
        assert "max_constant_bytes" in str(e) or "memory" in str(e), e
    else:
        assert os.path.getsize(tmp_path / "m.spr") < 2**20


def test_tune_densify_is_bounded(rng: np.random.Generator) -> None:
    # a sparse 3x3 conv whose dense copy would be 4 GiB: tune must not densify it
    b = sparsert.GraphBuilder("tune")
    x = b.input("x", (1, 2**13, 4, 4))
    # 1 nonzero: the file is small
    wc = b.constant("w", sparsert.format.Tensor.csr("w", (2**14, 2**13, 3, 3), np.r_[0, np.ones(2**14, np.int64)],
                                                    np.zeros(1, np.int64), np.ones(1, np.float32)))
    b.output(b.node("Conv", [x, wc, ""], {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}))
    m = b.load(tune=True)
    assert any("not tuned" in line for line in m.load_log), m.load_log


def test_tune_dense_copies_share_one_expand_budget() -> None:
    # three 1-nonzero weights of 8192x4096 (128 MiB dense each): tuning may densify two
    # within the 256 MiB budget; the third stays sparse, and the log says so
    b = sparsert.GraphBuilder("budget")
    h = b.input("x", (1, 4096))
    for i in range(3):
        rows = 8192 if i % 2 == 0 else 4096
        cols = 4096 if i % 2 == 0 else 8192
        indptr = np.zeros(rows + 1, np.int64)
        indptr[1:] = 1
        w = sparsert.format.Tensor.csr(f"w{i}", (rows, cols), indptr, np.zeros(1, np.int64), np.ones(1, np.float32))
        h = b.node("Linear", [h, b.constant(f"w{i}", w), ""])
    b.output(h)
    # (no tune cache: w0 and w2 share a pattern, and a cached choice builds one copy only)
    m = b.load(tune=True, tune_cache=False)
    assert sum("expand budget" in line for line in m.load_log) >= 1, m.load_log
    y = m.run(np.ones((1, 4096), np.float32))
    assert y.shape == (1, 8192) and float(y[0, 0]) == 1.0 and float(np.abs(y).sum()) == 1.0


def test_arena_cache_is_bounded_and_releasable(rng: np.random.Generator) -> None:
    m = _sparse_model(rng).load(max_cached_plans=4)
    for batch in range(1, 20):
        m.run(np.ones((batch, 32), np.float32))
    held = m.cached_bytes
    assert 0 < held <= 4 * 20 * 64 * 4 * 4, held
    m.release_memory()
    assert m.cached_bytes == 0
    np.testing.assert_array_equal(m.run(np.ones((2, 32), np.float32)).shape, (2, 64))


def test_npz_member_names_are_checked_before_decompressing(tmp_path: Any, rng: np.random.Generator,
                                                          capsys: pytest.CaptureFixture) -> None:
    path = str(tmp_path / "m.spr")
    _sparse_model(rng).save(path)
    bomb = str(tmp_path / "in.npz")
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (2**28, 32)})
        with z.open("not_x.npy", "w", force_zip64=True) as f:
            f.write(buf.getvalue())
            block = b"\0" * 2**20
            for _ in range(64):  # 64 MiB of zeros compress to ~64 KiB
                f.write(block)
    assert os.path.getsize(bomb) < 2**20
    assert cli_main(["run", path, "-i", bomb]) != 0
    err = capsys.readouterr().err
    assert "not_x" in err and "'x'" in err, err


# --------------------------------------------------------------------------- 11. smaller ones


def test_saved_files_follow_the_umask_and_symlinks(tmp_path: Any, rng: np.random.Generator) -> None:
    b = _sparse_model(rng)
    old = os.umask(0o022)
    try:
        b.save(str(tmp_path / "a.spr"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.spr").st_mode) == 0o644
    target = tmp_path / "real.spr"
    target.write_bytes(b"old")
    link = tmp_path / "link.spr"
    link.symlink_to(target)
    b.save(str(link))
    assert link.is_symlink() and sparsert.load(str(target)).inputs[0].name == "x"


def test_inspect_escapes_control_characters(tmp_path: Any, capsys: pytest.CaptureFixture) -> None:
    b = sparsert.GraphBuilder("evil\x1b[2J")
    x = b.input("x\x1b]0;owned\x07", (2, 3))
    b.output(b.node("Relu", [x], name="node\r\x1b[1A"), "y\x1b[31m")
    b.metadata["note"] = "\x1b[2Jclear"
    path = str(tmp_path / "evil.spr")
    b.save(path)
    assert cli_main(["inspect", path]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "\\x1b" in out


@pytest.mark.parametrize("names", [("file", "allow_pickle"), ("a/b", "..")])
def test_run_writes_outputs_with_any_names(tmp_path: Any, rng: np.random.Generator, names: tuple[str, str]) -> None:
    b = sparsert.GraphBuilder("names")
    x = b.input("x", (2, 3))
    b.output(b.node("Relu", [x]), names[0])
    b.output(b.node("Neg", [x]), names[1])
    path = str(tmp_path / "m.spr")
    b.save(path)
    xv = rng.standard_normal((2, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", xv)
    assert cli_main(["run", path, "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz")]) == 0
    with zipfile.ZipFile(tmp_path / "y.npz") as z:
        assert sorted(z.namelist()) == sorted(n + ".npy" for n in names)
        got = {n[:-4]: np.lib.format.read_array(z.open(n), allow_pickle=False) for n in z.namelist()}
    np.testing.assert_array_equal(got[names[0]], np.maximum(xv, 0))
    np.testing.assert_array_equal(got[names[1]], -xv)


def test_zero_d_input_can_be_fed() -> None:
    b = sparsert.GraphBuilder("scalar")
    s = b.input("s", ())
    b.output(b.node("Mul", [s, b.constant("k", np.array(3.0, np.float32))]))
    m = b.load()
    assert m.inputs[0].shape == ()
    y = m.run(np.array(2.0, np.float32))
    assert y.shape == () and float(y) == 6.0
    with pytest.raises(ValueError, match="shape"):
        m.run(np.array([2.0], np.float32))
