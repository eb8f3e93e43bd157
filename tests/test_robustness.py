"""Hostile and unusual input: corrupt files, mutated ONNX, absurd sizes, bad arrays, threads.

* Mutated ``.spr`` files (byte flips, truncations, insertions, with and without the
  checksums fixed up so the mutation reaches the parser) -> the Python reader raises only
  ``sparsert.format.FormatError`` and the native loader only the documented types
  (``FormatError``/``UnsupportedError``/``ValueError``, ``MemoryError`` for absurd shapes).
* Mutated ONNX files -> ``sparsert.convert`` raises only ``ValueError`` (its documented
  ``FormatError``/``UnsupportedError`` are ValueErrors).
* Absurd sizes are refused before anything is allocated; a huge batch is a clear MemoryError.
* Bad arrays at run time: wrong dtype, rank or shape are ValueErrors; any memory layout gives
  the same result; NaN/Inf propagate as IEEE arithmetic says; an empty batch works.
* Every byte of a small file matters: flipping any one is detected.
* Files are written atomically: an error mid-write leaves the old file and no temp file.
"""

from __future__ import annotations

import os
import resource
import threading
import zlib
from typing import Any

import numpy as np
import pytest
import spr_corruptions as raw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsert
from sparsert import format as spr

SEED = 20240917
NATIVE_ERRORS = (ValueError, MemoryError)  # FormatError, UnsupportedError are ValueErrors


def _rng(offset: int = 0) -> np.random.Generator:
    print(f"seed {SEED + offset}")
    return np.random.default_rng(SEED + offset)


def _mlp_bytes(storage: str = "csr") -> bytes:
    rng = np.random.default_rng(SEED)
    b = sparsert.GraphBuilder("mlp", metadata={"note": "robustness", "ints": [1, 2, 3]})
    x = b.input("x", (-1, 12))
    w1 = rng.standard_normal((10, 12)).astype(np.float32)
    w1[rng.random(w1.shape) < 0.6] = 0.0
    h = b.node(
        "Linear",
        [x, b.constant("w1", w1, storage=storage), b.constant("b1", rng.standard_normal(10))],
        {"activation": "relu"},
    )
    h = b.node("Linear", [h, b.constant("w2", rng.standard_normal((4, 10)))])
    b.output(b.node("Softmax", [h], {"axis": -1}), "y")
    return b.to_bytes()


def _cnn_bytes() -> bytes:
    rng = np.random.default_rng(SEED + 1)
    b = sparsert.GraphBuilder("cnn")
    x = b.input("x", (-1, 2, 6, 6))
    k = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    k[rng.random(k.shape) < 0.5] = 0.0
    h = b.node(
        "Conv",
        [x, b.constant("k", k, storage="csr"), b.constant("kb", rng.standard_normal(3))],
        {"pads": [1, 1, 1, 1]},
    )
    h = b.node("MaxPool", [h], {"kernel_shape": [2, 2]})
    h = b.node("Flatten", [h], {"axis": 1})
    b.output(b.node("Linear", [h, b.constant("fc", rng.standard_normal((2, 27)))]), "y")
    return b.to_bytes()


VALID_FILES = [_mlp_bytes("csr"), _mlp_bytes("dense"), _cnn_bytes()]


def _fix_crcs(data: bytes) -> bytes:
    """Recompute both header checksums when the header's sizes are in range."""
    if len(data) < spr.HEADER_SIZE:
        return data
    b = bytearray(data)
    body_size = int.from_bytes(b[16:24], "little")
    data_offset = int.from_bytes(b[24:32], "little")
    data_size = int.from_bytes(b[32:40], "little")
    if body_size <= len(b) - 48:
        b[40:44] = zlib.crc32(bytes(b[48 : 48 + body_size])).to_bytes(4, "little")
    if data_offset <= len(b) and data_size <= len(b) - data_offset:
        b[44:48] = zlib.crc32(bytes(b[data_offset : data_offset + data_size])).to_bytes(4, "little")
    return bytes(b)


@st.composite
def mutated_spr(draw: Any) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_FILES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "u64", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "u64" and len(data) >= 8:
            # a field-sized overwrite with an interesting value (counts, dims, offsets)
            pos = min(pos, len(data) - 8) & ~3
            value = draw(
                st.sampled_from(
                    [0, 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63, 2**64 - 1, -1 & (2**64 - 1), 65537]
                )
            )
            data[pos : pos + 8] = value.to_bytes(8, "little")
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
    out = bytes(data)
    return _fix_crcs(out) if draw(st.booleans()) else out


@settings(
    max_examples=1500,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    database=None,
)
@given(mutated_spr())
def test_mutated_spr_files_raise_only_documented_errors(data: bytes) -> None:
    python_error: str | None = None
    try:
        spr.from_bytes(data)
    except spr.FormatError as e:
        python_error = str(e)
    try:
        model = sparsert.load_bytes(data, threads=1)
    except NATIVE_ERRORS as e:
        if python_error is not None:
            # Both readers make the same structural checks: what Python refuses, C++ refuses.
            assert isinstance(e, sparsert.FormatError), (python_error, repr(e))
        return
    assert python_error is None, f"the native loader accepted a file Python refuses: {python_error}"
    # It loaded: it must also run on its declared shapes (with -1 read as 1).
    inputs = [np.ones([1 if d < 0 else d for d in s.shape], np.float32) for s in model.inputs]
    if sum(int(np.prod(a.shape)) for a in inputs) <= 1 << 16:
        try:
            model.run(inputs)
        except NATIVE_ERRORS:
            pass


def _onnx_model_bytes() -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEED + 2)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    k = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["img", "k"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Gemm", ["x", "w"], ["g"], transB=1),
        helper.make_node("Sigmoid", ["g"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 1, 4, 4]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
        ],
        [
            helper.make_tensor_value_info("f", TensorProto.FLOAT, [1, 32]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4]),
        ],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(k, "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return onnx._serialize(model) if hasattr(onnx, "_serialize") else model.SerializeToString()


def test_valid_onnx_base_file_converts(tmp_path: Any) -> None:
    src = tmp_path / "m.onnx"
    src.write_bytes(_onnx_model_bytes())
    model = sparsert.load(sparsert.convert(src, tmp_path / "m.spr"))
    assert [s.name for s in model.outputs] == ["f", "y"]


@st.composite
def mutated_onnx(draw: Any) -> bytes:
    data = bytearray(ONNX_BYTES)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


try:
    ONNX_BYTES = _onnx_model_bytes()
except BaseException:  # pytest.skip raises a BaseException subclass when onnx is missing
    ONNX_BYTES = b""


@pytest.mark.skipif(not ONNX_BYTES, reason="onnx not installed")
@settings(
    max_examples=500,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
    database=None,
)
@given(mutated_onnx())
def test_mutated_onnx_files_raise_only_documented_errors(tmp_path: Any, data: bytes) -> None:
    src = tmp_path / "m.onnx"
    dst = tmp_path / "m.spr"
    dst.unlink(missing_ok=True)  # tmp_path is shared by all examples
    src.write_bytes(data)
    try:
        out = sparsert.convert(src, dst)
    except ValueError:  # FormatError, UnsupportedError and ValueError are the documented kinds
        assert not dst.exists()
        return
    sparsert.load(out)  # what convert writes must load


# --------------------------------------------------------------------------- every byte matters


def test_every_flipped_byte_is_detected() -> None:
    """Flip each byte of a small file in turn: each flip is refused by both readers, and
    in the data section it is the data checksum that catches it, with a clear message."""
    data = _mlp_bytes("csr")
    m = spr.from_bytes(data)
    assert m.tensors
    data_offset = int.from_bytes(data[24:32], "little")
    assert len(data) - data_offset > 0
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        bad_bytes = bytes(bad)
        with pytest.raises(spr.FormatError) as py_err:
            spr.from_bytes(bad_bytes)
        with pytest.raises(sparsert.FormatError) as native_err:
            sparsert.load_bytes(bad_bytes, threads=1)
        if pos >= data_offset:
            assert "data checksum mismatch" in str(py_err.value), pos
            assert "data checksum mismatch" in str(native_err.value), pos


def test_data_checksum_message_names_both_values() -> None:
    data = bytearray(_mlp_bytes("dense"))
    data_offset = int.from_bytes(data[24:32], "little")
    data[data_offset + 1] ^= 0x01  # inside the first tensor's buffer (at data offset 0)
    with pytest.raises(
        sparsert.FormatError, match=r"data checksum mismatch: stored [0-9a-f]{8}, computed [0-9a-f]{8}"
    ):
        sparsert.load_bytes(bytes(data))
    # verify=False skips only the data checksum: the file then loads
    sparsert.load_bytes(bytes(data), verify=False)


# --------------------------------------------------------------------------- absurd sizes


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _metadata_count_2_60(b: bytes) -> bytes:
    """The first u64 of the body (the metadata count) set to 2^60, checksums fixed."""
    return raw.fix_crcs(b[:48] + (2**60).to_bytes(8, "little") + b[56:])


ABSURD = [
    ("metadata_count_2^60", _metadata_count_2_60, "metadata count"),
    ("tensor_count_2^40", raw._edit(lambda s: s.update(n_tensors=2**40)), "tensor count"),
    ("dims_product_overflow", raw._set_tensor("b1", dims=[2**62, 2]), "product of dims overflows"),
    ("dims_product_overflow_3", raw._set_tensor("b1", dims=[2**32, 2**32, 2]), "product of dims overflows"),
    ("nbytes_wraps", raw._set_tensor("b1", dims=[2**62 + 1], nbytes=4), "nbytes"),
    (
        "tensor_bytes_past_file",
        raw._set_tensor("b1", dims=[2**36], nbytes=2**38),
        "extends past the data section",
    ),
    ("offset_near_2^64", raw._set_tensor("b1", offset=2**64 - 64), "past the data section"),
]


@pytest.mark.parametrize("name,corrupt,needle", ABSURD)
def test_absurd_sizes_are_refused_before_allocating(name: str, corrupt: Any, needle: str) -> None:
    import tracemalloc

    bad = corrupt(raw.valid_bytes())
    before = _maxrss_mib()
    tracemalloc.start()
    try:
        with pytest.raises(spr.FormatError, match=needle):
            spr.from_bytes(bad)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{name}: the Python reader allocated {peak} bytes before refusing"
    with pytest.raises(sparsert.FormatError, match=needle):
        sparsert.load_bytes(bad)
    assert _maxrss_mib() - before < 64, f"{name}: the native loader's peak RSS grew"


def _expanding_model() -> sparsert.Model:
    """x [-1, 1] -> Linear to 2^16 features: a small input whose activations are huge."""
    b = sparsert.GraphBuilder("expand")
    x = b.input("x", (-1, 1))
    b.output(b.node("Linear", [x, b.constant("w", np.ones((1 << 16, 1), np.float32))]))
    return b.load(threads=1)


def test_huge_batch_is_a_clear_memory_error_before_allocating() -> None:
    model = _expanding_model()
    x = np.ones((1 << 22, 1), np.float32)  # 16 MiB in; the output would be 1 TiB
    before = _maxrss_mib()
    with pytest.raises(MemoryError, match="use a smaller batch"):
        model.run(x)
    with pytest.raises(MemoryError, match="use a smaller batch"):
        model.output_shapes((1 << 22, 1))
    assert _maxrss_mib() - before < 64
    # a view claiming 2^40 rows (stride 0): refused, not materialised
    view = np.broadcast_to(np.ones((1, 1), np.float32), (1 << 40, 1))
    with pytest.raises(MemoryError):
        model.run(view)
    assert _maxrss_mib() - before < 64
    # the model is still usable
    assert model.run(np.ones((2, 1), np.float32)).shape == (2, 1 << 16)


# --------------------------------------------------------------------------- bad arrays at run time


@pytest.fixture(scope="module")
def mlp() -> sparsert.Model:
    return sparsert.load_bytes(_mlp_bytes("csr"), threads=2)


@pytest.fixture(scope="module")
def cnn() -> sparsert.Model:
    return sparsert.load_bytes(_cnn_bytes(), threads=2)


@pytest.mark.parametrize(
    "dtype", [np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, np.complex64]
)
def test_wrong_dtype_is_a_value_error_naming_it(mlp: sparsert.Model, dtype: Any) -> None:
    with pytest.raises(ValueError, match=f"dtype {np.dtype(dtype)}, expected float32"):
        mlp.run(np.ones((2, 12), dtype))


def test_object_and_string_inputs_are_value_errors(mlp: sparsert.Model) -> None:
    with pytest.raises(ValueError):
        mlp.run(np.array([["a"] * 12]))
    with pytest.raises(ValueError):
        mlp.run(np.array([[object()] * 12]))
    with pytest.raises(ValueError):
        mlp.run(None)


@pytest.mark.parametrize("shape", [(12,), (2, 11), (2, 13), (1, 2, 12), (), (0,)])
def test_wrong_rank_or_shape_is_a_value_error(mlp: sparsert.Model, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="input 'x' has shape"):
        mlp.run(np.ones(shape, np.float32))


def test_wrong_input_count_or_names(mlp: sparsert.Model) -> None:
    x = np.ones((1, 12), np.float32)
    with pytest.raises(ValueError, match="takes 1 input"):
        mlp.run([x, x])
    with pytest.raises(ValueError, match="missing input"):
        mlp.run({"z": x})
    with pytest.raises(ValueError):
        mlp._core.run([x, x])  # the native layer checks too


def test_any_memory_layout_gives_the_same_result(mlp: sparsert.Model, cnn: sparsert.Model) -> None:
    rng = _rng(3)
    for model, shape in [(mlp, (5, 12)), (cnn, (3, 2, 6, 6))]:
        x = rng.standard_normal(shape).astype(np.float32)
        expected = model.run(x)
        fortran = np.asfortranarray(x)
        assert not fortran.flags.c_contiguous
        np.testing.assert_array_equal(model.run(fortran), expected)
        wide = np.zeros((shape[0], 2 * shape[1], *shape[2:]), np.float32)
        wide[:, ::2] = x
        strided = wide[:, ::2]
        assert not strided.flags.c_contiguous
        np.testing.assert_array_equal(model.run(strided), expected)
        reversed_rows = x[::-1].copy()[::-1]
        np.testing.assert_array_equal(model.run(reversed_rows), expected)
        unaligned = np.frombuffer(b"\0" + x.tobytes(), np.float32, offset=1).reshape(shape)
        assert unaligned.ctypes.data % 4 != 0
        np.testing.assert_array_equal(model.run(unaligned), expected)
        readonly = x.copy()
        readonly.flags.writeable = False
        np.testing.assert_array_equal(model.run(readonly), expected)
        np.testing.assert_array_equal(x, x.copy())  # the input is never written


def test_nan_and_inf_propagate_as_ieee_arithmetic_says() -> None:
    """Dense Linear: a NaN/Inf input poisons its whole row and nothing else. CSR Linear:
    outputs whose weight row has a nonzero at that column must see it; the others are
    either the value without that column (zeros skipped by the sparse kernel) or NaN/Inf
    (the runtime may run a not-so-sparse CSR weight with the dense kernel, where 0 x NaN
    is NaN). No crash, no change to other rows."""
    rng = _rng(4)
    w = rng.standard_normal((6, 9)).astype(np.float32)
    w[rng.random(w.shape) < 0.5] = 0.0
    w[:, 4] = 0.0
    w[2, 4] = 1.5  # exactly one weight reads column 4
    x = rng.standard_normal((4, 9)).astype(np.float32)
    x[1, 4] = np.nan
    x[2, 4] = np.inf
    x[3, 4] = -np.inf
    reference = x[0:1].astype(np.float64) @ w.T.astype(np.float64)
    for storage in ("dense", "csr"):
        b = sparsert.GraphBuilder("nan")
        xi = b.input("x", (-1, 9))
        b.output(b.node("Linear", [xi, b.constant("w", w, storage=storage)]))
        y = b.load(threads=1).run(x)
        np.testing.assert_allclose(y[0:1], reference, rtol=1e-5, atol=1e-5)
        if storage == "dense":
            assert np.isnan(y[1]).all()
        else:
            assert np.isnan(y[1, 2])
            assert y[2, 2] == np.inf and y[3, 2] == -np.inf
            w_without = w.copy().astype(np.float64)
            w_without[:, 4] = 0.0
            x_without = x.astype(np.float64)
            x_without[:, 4] = 0.0
            skipped = x_without @ w_without.T
            for r in (1, 2, 3):
                for j in (0, 1, 3, 4, 5):
                    got = y[r, j]
                    assert not np.isfinite(got) or abs(got - skipped[r, j]) <= 1e-4 * (
                        1 + abs(skipped[r, j])
                    ), (
                        r,
                        j,
                        got,
                    )
    # element-wise ops and softmax: NaN stays NaN, Inf saturates, no crash
    b = sparsert.GraphBuilder("act")
    xi = b.input("x", (-1, 4))
    r = b.node("Relu", [xi])
    s = b.node("Sigmoid", [xi])
    sm = b.node("Softmax", [xi], {"axis": -1})
    for t in (r, s, sm):
        b.output(t)
    r_out, s_out, sm_out = b.load(threads=1).run(np.array([[np.nan, np.inf, -np.inf, 1.0]], np.float32))
    assert np.isnan(r_out[0, 0]) and r_out[0, 1] == np.inf and r_out[0, 2] == 0.0 and r_out[0, 3] == 1.0
    assert np.isnan(s_out[0, 0]) and s_out[0, 1] == 1.0 and s_out[0, 2] == 0.0
    assert np.isnan(sm_out).all()  # a NaN in a softmax row makes the row NaN


def test_empty_batch_gives_empty_outputs(mlp: sparsert.Model, cnn: sparsert.Model) -> None:
    assert mlp.run(np.zeros((0, 12), np.float32)).shape == (0, 4)
    assert cnn.run(np.zeros((0, 2, 6, 6), np.float32)).shape == (0, 2)
    # and the next real run is unaffected
    x = np.ones((1, 12), np.float32)
    np.testing.assert_allclose(mlp.run(x).sum(), 1.0, rtol=1e-6)


def test_eight_python_threads_on_one_model_are_bit_identical(
    mlp: sparsert.Model, cnn: sparsert.Model
) -> None:
    rng = _rng(5)
    cases = [(mlp, rng.standard_normal((b, 12)).astype(np.float32)) for b in (1, 2, 3, 7, 16)]
    cases += [(cnn, rng.standard_normal((b, 2, 6, 6)).astype(np.float32)) for b in (1, 4)]
    expected = [m.run(x) for m, x in cases]
    failures: list[str] = []

    def worker(t: int) -> None:
        try:
            for r in range(300):
                k = (t * 5 + r) % len(cases)
                model, x = cases[k]
                if not np.array_equal(model.run(x), expected[k]):
                    failures.append(f"thread {t} run {r} case {k}")
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(f"thread {t}: {e!r}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not failures, failures[:5]


# --------------------------------------------------------------------------- atomic writes


def _small_builder(scale: float) -> sparsert.GraphBuilder:
    b = sparsert.GraphBuilder("atomic")
    x = b.input("x", (1, 3))
    b.output(b.node("Mul", [x, b.constant("c", np.full((3,), scale, np.float32))]))
    return b


@pytest.mark.parametrize("fail_at", ["write", "fsync", "replace", "interrupt"])
def test_failed_save_leaves_the_old_file_and_no_temp_file(
    tmp_path: Any, monkeypatch: Any, fail_at: str
) -> None:
    path = tmp_path / "m.spr"
    _small_builder(2.0).save(path)
    original = path.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> Any:
        if fail_at == "interrupt":
            raise KeyboardInterrupt
        raise OSError(28, "No space left on device")

    if fail_at == "write":
        real_fdopen = os.fdopen

        class HalfWriter:
            def __init__(self, f: Any) -> None:
                self._f = f

            def __enter__(self) -> HalfWriter:
                return self

            def __exit__(self, *exc: Any) -> None:
                self._f.close()

            def write(self, data: bytes) -> int:
                self._f.write(data[: len(data) // 2])  # half the bytes reach the disk, then it fails
                self._f.flush()
                raise OSError(28, "No space left on device")

        monkeypatch.setattr(spr.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    elif fail_at == "fsync":
        monkeypatch.setattr(spr.os, "fsync", boom)
    else:
        monkeypatch.setattr(spr.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt if fail_at == "interrupt" else OSError):
        _small_builder(3.0).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.spr"], "a temp file was left behind"
    y = sparsert.load(path).run(np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(y, np.full((1, 3), 2.0, np.float32))


@pytest.mark.skipif(not ONNX_BYTES, reason="onnx not installed")
def test_failed_convert_leaves_the_old_file(tmp_path: Any, monkeypatch: Any) -> None:
    src = tmp_path / "m.onnx"
    src.write_bytes(ONNX_BYTES)
    dst = tmp_path / "m.spr"
    _small_builder(2.0).save(dst)
    original = dst.read_bytes()
    monkeypatch.setattr(spr.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        sparsert.convert(src, dst)
    monkeypatch.undo()
    assert dst.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.spr"]


def test_failed_export_leaves_the_old_file(tmp_path: Any, monkeypatch: Any) -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    dst = tmp_path / "m.spr"
    _small_builder(2.0).save(dst)
    original = dst.read_bytes()
    monkeypatch.setattr(
        spr.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device"))
    )
    with pytest.raises(OSError):
        sparsert.export(net, torch.zeros(1, 4), dst)
    monkeypatch.undo()
    assert dst.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.spr"]
