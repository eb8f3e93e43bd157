"""sparsert.format: writer -> reader round trips, writer validation, atomic writes, and the
shared corrupt-file table (tests/spr_corruptions.py) against the Python reader. Random data
comes from the printed per-test seed of conftest.py's ``rng`` fixture."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import spr_corruptions as corruptions

from sparsert import format as spr


def random_sparse(rng: np.random.Generator, shape: tuple[int, ...], sparsity: float) -> np.ndarray:
    a = rng.standard_normal(shape).astype(np.float32)
    a[rng.random(shape) < sparsity] = 0.0
    return a


def simple_model(tensors: list[spr.Tensor], **metadata: Any) -> spr.ModelFile:
    """A graph that uses nothing but is valid: x -> Identity -> y, plus the constants."""
    return spr.ModelFile(
        inputs=[spr.ValueInfo("x", (-1, 3))],
        outputs=["y"],
        nodes=[spr.Node("Identity", ["x"], ["y"], name="id")],
        tensors=tensors,
        metadata=dict(metadata),
    )


def round_trip(model: spr.ModelFile, alignment: int = 64) -> spr.ModelFile:
    return spr.from_bytes(spr.to_bytes(model, alignment))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
def test_dense_round_trip(rng: np.random.Generator, dtype: str) -> None:
    tensors = []
    for i in range(6):
        shape = tuple(int(d) for d in rng.integers(1, 7, size=int(rng.integers(1, 5))))
        a = (rng.standard_normal(shape) * 1000).astype(dtype)
        tensors.append(spr.Tensor.dense(f"t{i}", a))
    tensors.append(spr.Tensor.dense("big", np.array([2**62, -(2**62)], dtype=np.int64).astype(dtype)))
    back = round_trip(simple_model(tensors))
    for t, b in zip(tensors, back.tensors):
        assert b.name == t.name and b.storage == "dense" and b.dtype == dtype
        assert b.dims == t.dims
        assert b.data is not None and b.data.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(b.to_dense(), t.to_dense())


@pytest.mark.parametrize(
    ("shape", "sparsity", "index_bits", "expected_bits"),
    [
        ((17, 33), 0.7, None, 16),
        ((1, 1), 0.0, None, 16),
        ((8, 9), 0.0, None, 16),  # 0% sparsity: every element stored
        ((8, 9), 1.0, None, 16),  # 100% sparsity: nnz 0, all rows empty
        ((5, 3, 3, 3), 0.5, None, 16),  # conv weight: cols = 3*3*3
        ((6, 20), 0.6, 32, 32),
        ((3, 70000), 0.999, None, 32),  # cols > 65536 needs 32-bit indices
        ((7,), 0.5, None, 16),  # rank 1: cols = 1
    ],
)
def test_csr_round_trip(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    sparsity: float,
    index_bits: int | None,
    expected_bits: int,
) -> None:
    a = random_sparse(rng, shape, sparsity)
    if len(shape) > 1 and shape[0] > 2:
        a[1] = 0.0  # an empty row in the middle
    t = spr.Tensor.csr_from_dense("w", a, index_bits=index_bits)
    assert t.index_bits == expected_bits
    assert t.nnz == int(np.count_nonzero(a))
    assert t.rows == shape[0] and t.cols == int(np.prod(shape[1:]))
    assert t.sparsity == pytest.approx(1.0 - t.nnz / a.size)
    assert t.nbytes == 4 * (shape[0] + 1) + t.nnz * (expected_bits // 8) + 4 * t.nnz
    (b,) = round_trip(simple_model([t])).tensors
    assert b.storage == "csr" and b.dims == shape and b.index_bits == expected_bits
    assert b.nnz == t.nnz and b.nbytes == t.nbytes
    np.testing.assert_array_equal(b.to_dense(), a)


def test_csr_explicit_arrays_and_explicit_zeros() -> None:
    t = spr.Tensor.csr("w", (3, 5), [0, 2, 2, 4], [1, 4, 0, 3], [1.5, 0.0, -2.0, 3.0])
    (b,) = round_trip(simple_model([t])).tensors
    expected = np.zeros((3, 5), np.float32)
    expected[0, 1], expected[2, 0], expected[2, 3] = 1.5, -2.0, 3.0
    np.testing.assert_array_equal(b.to_dense(), expected)
    assert b.nnz == 4  # the stored zero counts


@pytest.mark.parametrize("shape", [(0,), (0, 3), (4, 0), (2, 0, 5)])
def test_zero_size_dims(shape: tuple[int, ...]) -> None:
    dense = spr.Tensor.dense("d", np.zeros(shape, np.float32))
    csr = spr.Tensor.csr_from_dense("c", np.zeros(shape, np.float32))
    d, c = round_trip(simple_model([dense, csr])).tensors
    assert d.dims == shape and d.to_dense().shape == shape and d.nbytes == 0
    assert c.dims == shape and c.nnz == 0 and c.to_dense().shape == shape
    assert c.row_ptr is not None and list(c.row_ptr) == [0] * (shape[0] + 1)


def test_scalar_keeps_rank_0() -> None:
    # version 2 stores 0-d tensors as such (version 1 files stored them as [1])
    (b,) = round_trip(simple_model([spr.Tensor.dense("s", np.float32(2.5))])).tensors
    assert b.dims == () and b.to_dense().shape == () and b.to_dense() == 2.5


def test_every_attribute_and_metadata_type() -> None:
    attrs: dict[str, Any] = {
        "int": 7,
        "neg": -(2**63),
        "bool": True,
        "np_int": np.int16(-3),
        "np_bool": np.bool_(False),
        "float": 0.1,
        "np_float": np.float32(0.5),
        "string": "relu",
        "unicode": "größe ✓",
        "empty_string": "",
        "ints": [1, -2, 2**40],
        "ints_tuple": (3, 4),
        "ints_array": np.array([5, 6], dtype=np.int64),
        "floats": [0.5, 1],
        "floats_array": np.array([0.25, -1.0], dtype=np.float32),
        "strings": ["a", "", "bc"],
        "empty": [],
    }
    expected: dict[str, Any] = {
        "int": 7,
        "neg": -(2**63),
        "bool": 1,
        "np_int": -3,
        "np_bool": 0,
        "float": 0.1,
        "np_float": 0.5,
        "string": "relu",
        "unicode": "größe ✓",
        "empty_string": "",
        "ints": [1, -2, 2**40],
        "ints_tuple": [3, 4],
        "ints_array": [5, 6],
        "floats": [0.5, 1.0],
        "floats_array": [0.25, -1.0],
        "strings": ["a", "", "bc"],
        "empty": [],
    }
    model = spr.ModelFile(
        inputs=[spr.ValueInfo("x", (-1, 3, 224, 224)), spr.ValueInfo("ids", (2,), "int64")],
        outputs=["y", "ids"],
        nodes=[spr.Node("Custom", ["x", ""], ["y"], attrs=attrs, name="n")],
        tensors=[],
        metadata={"sparsert.producer": "tests", **attrs},
    )
    back = round_trip(model)
    assert back.nodes[0].attrs == expected
    assert list(back.nodes[0].attrs) == list(attrs)  # file order kept
    assert back.metadata == {"sparsert.producer": "tests", **expected}
    for key in ("floats", "floats_array"):
        assert all(type(v) is float for v in back.nodes[0].attrs[key])
    assert type(back.nodes[0].attrs["bool"]) is int
    assert back.inputs == model.inputs
    assert back.outputs == ["y", "ids"]
    assert back.nodes[0].inputs == ["x", ""]


@pytest.mark.parametrize("alignment", [8, 16, 64, 4096, 65536])
def test_alignment(rng: np.random.Generator, alignment: int) -> None:
    a = random_sparse(rng, (9, 11), 0.5)
    model = simple_model([spr.Tensor.csr_from_dense("w", a), spr.Tensor.dense("b", a[0])])
    blob = spr.to_bytes(model, alignment)
    data_offset = struct.unpack_from("<Q", blob, 24)[0]
    assert data_offset % alignment == 0 and struct.unpack_from("<I", blob, 8)[0] == alignment
    back = spr.from_bytes(blob)
    np.testing.assert_array_equal(back.tensors[0].to_dense(), a)
    for arr in (
        back.tensors[0].row_ptr,
        back.tensors[0].col_idx,
        back.tensors[0].values,
        back.tensors[1].data,
    ):
        assert arr is not None
        address = arr.__array_interface__["data"][0]
        assert address % alignment == 0


def test_arrays_are_read_only_views_of_the_readers_copy(rng: np.random.Generator) -> None:
    blob = spr.to_bytes(simple_model([spr.Tensor.dense("b", rng.standard_normal(64).astype(np.float32))]))
    m = spr.from_bytes(blob)
    (t,) = m.tensors
    assert t.data is not None and not t.data.flags.writeable and t.data.base is not None
    # the view keeps the reader's memory alive after the model object is gone
    data = t.data
    del m, t
    np.testing.assert_array_equal(data, np.frombuffer(blob[-256:], np.float32))


def test_writer_matches_the_independent_raw_builder() -> None:
    """The writer encodes field for field what tests/spr_corruptions.py's raw builder encodes."""
    model = spr.ModelFile(
        inputs=[spr.ValueInfo("x", (-1, 4))],
        outputs=["y"],
        nodes=[
            spr.Node("Linear", ["x", "w1", "b1"], ["h"], {"activation": "relu"}, "fc1"),
            spr.Node("Linear", ["h", "w2", ""], ["y"], {}, "fc2"),
        ],
        tensors=[
            spr.Tensor.csr("w1", (3, 4), [0, 2, 2, 3], [0, 3, 1], [1.0, 2.0, 3.0]),
            spr.Tensor.dense("b1", np.array([0.5, -0.5, 1.5], np.float32)),
            spr.Tensor.csr("w2", (2, 3), [0, 1, 3], [2, 0, 1], [4.0, -5.0, 6.0], index_bits=32),
            spr.Tensor.dense("shape", np.array([-1, 3], np.int64)),
            spr.Tensor.bsr("wb", (4, 4), (2, 1), [0, 2, 3], [0, 3, 1], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ],
        metadata={
            "sparsert.producer": "tests",
            "ints": [1, -2, 3],
            "floats": [0.5, -1.25],
            "strings": ["a", "bc"],
            "pi": 3.25,
            "n": -7,
        },
    )
    assert spr.to_bytes(model) == corruptions.valid_bytes()


def test_unknown_op_types_are_accepted_by_the_format() -> None:
    model = spr.ModelFile([spr.ValueInfo("x", (1,))], ["y"], [spr.Node("NoSuchOp", ["x"], ["y"])], [], {})
    assert round_trip(model).nodes[0].op_type == "NoSuchOp"


# --------------------------------------------------------------------------- writer validation


def _linear(name: str, inputs: list[str], output: str) -> spr.Node:
    return spr.Node("Linear", inputs, [output], name=name)


W = spr.Tensor.dense("w", np.ones((3, 3), np.float32))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            spr.ModelFile([spr.ValueInfo("x", (1, 3))], ["y"], [_linear("a", ["x", "w"], "y")], [W, W], {}),
            "duplicate tensor name 'w'",
        ),
        (spr.ModelFile([spr.ValueInfo("w", (1, 3))], ["w"], [], [W], {}), "duplicate tensor name 'w'"),
        (
            spr.ModelFile(
                [spr.ValueInfo("x", (1, 3))],
                ["y"],
                [_linear("a", ["x", "w"], "y"), _linear("b", ["x", "w"], "y")],
                [W],
                {},
            ),
            "duplicate tensor name 'y'",
        ),
        (
            spr.ModelFile(
                [spr.ValueInfo("x", (1, 3))],
                ["z"],
                [_linear("a", ["x", "w"], "y"), _linear("a", ["y", "w"], "z")],
                [W],
                {},
            ),
            "duplicate node name 'a'",
        ),
        (
            spr.ModelFile([spr.ValueInfo("x", (1, 3))], ["y"], [_linear("a", ["x", "v"], "y")], [W], {}),
            "node 'a' input 'v' is not a graph input, constant or node output",
        ),
        (
            spr.ModelFile(
                [spr.ValueInfo("x", (1, 3))],
                ["z"],
                [_linear("b", ["y", "w"], "z"), _linear("a", ["x", "w"], "y")],
                [W],
                {},
            ),
            "node 'b' input 'y' is not produced before it is used",
        ),
        (
            spr.ModelFile([spr.ValueInfo("x", (1, 3))], ["y"], [_linear("a", ["y", "w"], "y")], [W], {}),
            "node 'a' input 'y' is not produced before it is used (nodes must be in topological order",
        ),
        (
            spr.ModelFile([spr.ValueInfo("x", (1, 3))], ["q"], [], [], {}),
            "graph output 'q' is not a graph input",
        ),
        (spr.ModelFile([spr.ValueInfo("", (1, 3))], [], [], [], {}), "graph input #0 has an empty name"),
        (spr.ModelFile([spr.ValueInfo("x", (0, 3))], [], [], [], {}), "graph input 'x': dim 0 is 0"),
        (spr.ModelFile([spr.ValueInfo("x", (1,) * 9)], [], [], [], {}), "rank 9 exceeds 8"),
        (spr.ModelFile([spr.ValueInfo("x", (1,), "float16")], [], [], [], {}), "unknown dtype 'float16'"),
        (spr.ModelFile([], [], [spr.Node("", [], ["y"], name="n")], [], {}), "node 'n': empty op_type"),
        (
            spr.ModelFile([], [], [spr.Node("Op", [], [""], name="n")], [], {}),
            "node 'n': output #0 has an empty name",
        ),
        (spr.ModelFile([], [], [], [spr.Tensor.dense("", [1.0])], {}), "tensor #0 has an empty name"),
        (spr.ModelFile([], [], [], [], {"k": "x" * 65537}), "string length 65537 exceeds the limit 65536"),
        (spr.ModelFile([], [], [], [], {"k": [1, "a"]}), "only numbers or only strings"),
        (spr.ModelFile([], [], [], [], {"k": 2**63}), "does not fit in int64"),
        (spr.ModelFile([], [], [], [], {"k": {"a": 1}}), "unsupported value type dict"),
        (spr.ModelFile([], [], [], [], {"k": b"raw"}), "unsupported value type bytes"),
        (
            spr.ModelFile([], [], [], [spr.Tensor.csr("w", (2, 4), [0, 2, 2], [3, 1], [1.0, 2.0])], {}),
            "tensor 'w': CSR column indices not strictly increasing in row 0 (1 after 3)",
        ),
        (
            spr.ModelFile([], [], [], [spr.Tensor.csr("w", (2, 4), [0, 1, 2], [0, 4], [1.0, 2.0])], {}),
            "tensor 'w': CSR column index 4 out of range (cols 4) in row 1",
        ),
        (
            spr.ModelFile([], [], [], [spr.Tensor.csr("w", (2, 4), [0, 2, 1], [0, 1], [1.0, 2.0])], {}),
            "tensor 'w': CSR row_ptr decreases at row 1 (2 then 1)",
        ),
        (
            spr.ModelFile([], [], [], [spr.Tensor.csr("w", (2, 4), [0, 1], [0], [1.0])], {}),
            "CSR row_ptr has 2 entries, rows + 1 is 3",
        ),
        (
            spr.ModelFile(
                [], [], [], [spr.Tensor("w", (2, 2), "float32", "dense", np.zeros(3, np.float32))], {}
            ),
            "data has 3 elements, dims (2, 2) need 4",
        ),
        (
            spr.ModelFile(
                [],
                [],
                [],
                [
                    spr.Tensor(
                        "w",
                        (2,),
                        "int32",
                        "csr",
                        None,
                        np.zeros(3, "u4"),
                        np.zeros(0, "u2"),
                        np.zeros(0, "f4"),
                    )
                ],
                {},
            ),
            "CSR storage requires float32, got int32",
        ),
    ],
)
def test_writer_refuses_invalid_models(model: spr.ModelFile, message: str) -> None:
    with pytest.raises(spr.FormatError) as info:
        spr.to_bytes(model)
    assert message in str(info.value)


@pytest.mark.parametrize("alignment", [0, 4, 12, 1 << 17])
def test_writer_refuses_bad_alignment(alignment: int) -> None:
    with pytest.raises(spr.FormatError, match="not a power of two in"):
        spr.to_bytes(simple_model([]), alignment)


def test_csr_constructor_checks() -> None:
    with pytest.raises(spr.FormatError, match="index_bits 8 must be 16 or 32"):
        spr.Tensor.csr("w", (1, 4), [0, 1], [0], [1.0], index_bits=8)
    with pytest.raises(spr.FormatError, match="do not fit in 16 bits"):
        spr.Tensor.csr("w", (1, 70000), [0, 1], [69999], [1.0], index_bits=16)


# --------------------------------------------------------------------------- files and atomic write


def test_write_read_file(tmp_path: Path, rng: np.random.Generator) -> None:
    a = random_sparse(rng, (10, 12), 0.8)
    model = simple_model([spr.Tensor.csr_from_dense("w", a)], **{"sparsert.producer": "tests"})
    path = tmp_path / "m.spr"
    spr.write(model, path)
    back = spr.read(path)
    np.testing.assert_array_equal(back.tensors[0].to_dense(), a)
    assert back.metadata == {"sparsert.producer": "tests"}
    assert os.listdir(tmp_path) == ["m.spr"]
    spr.write(simple_model([]), str(path))  # overwrite
    assert spr.read(str(path)).tensors == []


def test_read_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.spr"
    path.write_bytes(b"GGUF" + corruptions.valid_bytes()[4:])
    with pytest.raises(spr.FormatError, match=r"bad\.spr': bad magic"):
        spr.read(path)
    path.write_bytes(b"SPRT")
    with pytest.raises(spr.FormatError, match="file too small: 4 bytes"):
        spr.read(path)
    with pytest.raises(FileNotFoundError):
        spr.read(tmp_path / "missing.spr")


@pytest.mark.parametrize("failing", ["fsync", "replace", "write"])
def test_atomic_write_leaves_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "m.spr"
    spr.write(simple_model([spr.Tensor.dense("old", [1.0])]), path)
    old = path.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full (simulated)")

    if failing == "write":
        real_fdopen = os.fdopen

        class FailingFile:
            def __init__(self, f: Any) -> None:
                self.f = f

            def __enter__(self) -> FailingFile:
                return self

            def __exit__(self, *exc: Any) -> None:
                self.f.close()

            def write(self, data: bytes) -> int:
                self.f.write(data[: len(data) // 2])  # half written, then the error
                raise OSError("disk full (simulated)")

        monkeypatch.setattr(spr.os, "fdopen", lambda fd, mode: FailingFile(real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(spr.os, failing, boom)
    with pytest.raises(OSError, match="simulated"):
        spr.write(simple_model([spr.Tensor.dense("new", [2.0, 3.0])]), path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["m.spr"]  # no temp file left behind


def test_invalid_model_creates_no_file(tmp_path: Path) -> None:
    bad = spr.ModelFile([], ["nope"], [], [], {})
    with pytest.raises(spr.FormatError):
        spr.write(bad, tmp_path / "m.spr")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- corrupt files


@pytest.mark.parametrize(
    ("name", "corrupt", "expected"), corruptions.CORRUPTIONS, ids=[c[0] for c in corruptions.CORRUPTIONS]
)
def test_corrupt_file_is_refused(name: str, corrupt: Any, expected: str) -> None:
    valid = corruptions.valid_bytes()
    bad = corrupt(valid)
    assert bad != valid
    with pytest.raises(spr.FormatError) as info:
        spr.from_bytes(bad)
    assert expected in str(info.value), f"{name}: got {info.value!r}"
    if name in corruptions.VALID_WITHOUT_DATA_CHECK:
        spr.from_bytes(bad, verify=False)
    else:
        with pytest.raises(spr.FormatError):
            spr.from_bytes(bad, verify=False)


def test_corruption_names_are_unique() -> None:
    names = [c[0] for c in corruptions.CORRUPTIONS]
    assert len(names) == len(set(names))


def test_valid_base_file_is_accepted() -> None:
    m = spr.from_bytes(corruptions.valid_bytes())
    assert [t.name for t in m.tensors] == ["w1", "b1", "w2", "shape", "wb"]
    assert m.tensors[4].storage == "bsr" and m.tensors[4].block == (2, 1)
    np.testing.assert_array_equal(
        m.tensors[4].to_dense(), [[1, 0, 0, 3], [2, 0, 0, 4], [0, 5, 0, 0], [0, 6, 0, 0]]
    )
    assert m.tensors[0].index_bits == 16 and m.tensors[2].index_bits == 32


def test_every_truncation_is_refused() -> None:
    valid = corruptions.valid_bytes()
    for n in range(len(valid)):
        with pytest.raises(spr.FormatError):
            spr.from_bytes(valid[:n])


def test_every_byte_flip_is_refused_or_valid() -> None:
    """Each byte inverted, CRCs recomputed so the body parser sees it: a FormatError or a valid
    model, never another exception."""
    valid = corruptions.valid_bytes()
    refused = 0
    for i in range(len(valid)):
        bad = bytearray(valid)
        bad[i] ^= 0xFF
        if i >= 48:
            bad = bytearray(corruptions.fix_crcs(bytes(bad)))
        try:
            spr.from_bytes(bytes(bad))
        except spr.FormatError:
            refused += 1
    assert refused > len(valid) // 2


@pytest.mark.parametrize(
    ("name", "corrupt", "expected"), corruptions.CORRUPTIONS, ids=[c[0] for c in corruptions.CORRUPTIONS]
)
def test_corrupt_file_is_refused_by_the_cpp_reader(name: str, corrupt: Any, expected: str) -> None:
    """The same table through the runtime's loader (Model.load_bytes): the same messages."""
    import sparsert

    valid = corruptions.valid_bytes()
    sparsert.load_bytes(valid)  # the base file is a runnable model
    bad = corrupt(valid)
    with pytest.raises(sparsert.FormatError) as info:
        sparsert.load_bytes(bad)
    assert expected in str(info.value), f"{name}: got {info.value!r}"
    if name in corruptions.VALID_WITHOUT_DATA_CHECK:
        sparsert.load_bytes(bad, verify=False)
    else:
        with pytest.raises(sparsert.FormatError):
            sparsert.load_bytes(bad, verify=False)
