"""The ``.spr`` file format in numpy: writer and validating reader.

``docs/spr-format.md`` is the normative spec; this module and the C++ reader
(``csrc/format/reader.cc``) implement it field for field, make the same checks
in the same order and raise the same messages (``tests/spr_corruptions.py``
holds the shared table of broken files).

Layout (all little-endian)::

     offset 0                      48            data_offset (aligned)
     +-----------------------------+-------------+-----+------------------------------+
     | header: "SPRT" version      | body:       | pad | data: tensor buffers, each   |
     | alignment flags body_size   |  metadata   |     | aligned to `alignment`, zero |
     | data_offset data_size       |  graph      |     | padding between them         |
     | body_crc32 data_crc32       |  tensors    |     |                              |
     +-----------------------------+-------------+-----+------------------------------+
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "FormatError",
    "ValueInfo",
    "Node",
    "Tensor",
    "ModelFile",
    "to_bytes",
    "write",
    "from_bytes",
    "read",
    "MAGIC",
    "VERSION",
]

MAGIC = b"SPRT"
VERSION = 1
HEADER_SIZE = 48
MAX_STRING_LENGTH = 65536
MAX_RANK = 8

_HEADER = struct.Struct("<4sIIIQQQII")
assert _HEADER.size == HEADER_SIZE

# Value types (docs/spr-format.md §3.1).
_INT, _FLOAT, _STRING, _INTS, _FLOATS, _STRINGS = 1, 2, 3, 4, 5, 6

_DTYPE_CODES = {"float32": 1, "int32": 2, "int64": 3}
_DTYPE_NAMES = {v: k for k, v in _DTYPE_CODES.items()}
_DTYPE_NUMPY = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "int64": np.dtype("<i8")}
_DENSE, _CSR = 0, 1
_STORAGE_CODES = {"dense": _DENSE, "csr": _CSR}

# Smallest encodings of one item, used to bound counts (spec §4); the same
# constants as csrc/format/reader.cc.
_MIN_VALUE = 4 + 4
_MIN_METADATA = 4 + _MIN_VALUE
_MIN_INPUT = 4 + 4 + 4
_MIN_OUTPUT = 4
_MIN_NODE = 4 * 5
_MIN_STRING = 4
_MIN_ATTR = 4 + _MIN_VALUE
_MIN_TENSOR = 4 + 4 + 4 + 4 + 16
_MAX_U32 = 0xFFFFFFFF
_MAX_I64 = 2**63 - 1
_MAX_U64 = 2**64 - 1


from sparsert.errors import FormatError  # noqa: E402  (one class for Python and C++ readers)


def _q(name: str) -> str:
    """A name quoted for a message; control characters escaped as the C++ reader does."""
    return "'" + "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or c == "\x7f" else c for c in name) + "'"


def _at(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


# --------------------------------------------------------------------------- model classes


@dataclass
class ValueInfo:
    """A graph input: name, shape (``-1`` = given at run time) and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass
class Node:
    """One op of the graph; ``""`` in ``inputs`` is an absent optional input."""

    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""


@dataclass
class Tensor:
    """A constant: dense (``data``) or CSR (``row_ptr``, ``col_idx``, ``values``).

    CSR tensors are float32 matrices of ``rows = dims[0]`` and
    ``cols = prod(dims[1:])``. Arrays read from a file are read-only views.
    """

    name: str
    dims: tuple[int, ...]
    dtype: str = "float32"
    storage: str = "dense"
    data: np.ndarray | None = None
    row_ptr: np.ndarray | None = None
    col_idx: np.ndarray | None = None
    values: np.ndarray | None = None

    @staticmethod
    def dense(name: str, array: Any) -> Tensor:
        """A dense constant. Floats become float32; int32 stays; other integers become int64."""
        a = np.asarray(array)
        if a.dtype.kind == "f":
            dtype = "float32"
        elif a.dtype == np.int32:
            dtype = "int32"
        elif a.dtype.kind in "iub":
            if a.dtype == np.uint64 and a.size and int(a.max()) > _MAX_I64:
                raise FormatError(f"tensor {_q(name)}: uint64 values do not fit in int64")
            dtype = "int64"
        else:
            raise FormatError(f"tensor {_q(name)}: unsupported array dtype {a.dtype}")
        if a.ndim == 0:
            a = a.reshape(1)  # a scalar is written with shape [1]
        a = np.ascontiguousarray(a, dtype=_DTYPE_NUMPY[dtype])
        return Tensor(name=name, dims=tuple(int(d) for d in a.shape), dtype=dtype, data=a)

    @staticmethod
    def csr(
        name: str,
        dims: Sequence[int],
        row_ptr: Any,
        col_idx: Any,
        values: Any,
        index_bits: int | None = None,
    ) -> Tensor:
        """A float32 CSR constant; ``index_bits`` defaults to 16 when ``cols <= 65536``."""
        dims = tuple(int(d) for d in dims)
        cols = int(np.prod(dims[1:], dtype=object)) if dims else 0
        if index_bits is None:
            index_bits = 16 if cols <= 65536 else 32
        if index_bits not in (16, 32):
            raise FormatError(f"tensor {_q(name)}: CSR index_bits {index_bits} must be 16 or 32")
        col = np.asarray(col_idx)
        if col.size and (int(col.min()) < 0 or int(col.max()) >= 2**index_bits):
            raise FormatError(f"tensor {_q(name)}: CSR column indices do not fit in {index_bits} bits")
        return Tensor(
            name=name,
            dims=dims,
            dtype="float32",
            storage="csr",
            row_ptr=np.ascontiguousarray(row_ptr, dtype="<u4"),
            col_idx=np.ascontiguousarray(col, dtype="<u2" if index_bits == 16 else "<u4"),
            values=np.ascontiguousarray(values, dtype="<f4"),
        )

    @staticmethod
    def csr_from_dense(name: str, array: Any, index_bits: int | None = None) -> Tensor:
        """Packs the nonzeros of a float array (rank >= 1) as CSR over ``[dims[0], prod(dims[1:])]``."""
        a = np.asarray(array, dtype=np.float32)
        if a.ndim == 0:
            a = a.reshape(1)
        matrix = a.reshape(a.shape[0], -1) if a.shape[0] else a.reshape(0, int(np.prod(a.shape[1:])))
        rows, cols = np.nonzero(matrix)  # row-major order: rows sorted, columns sorted within a row
        row_ptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=matrix.shape[0]), out=row_ptr[1:])
        return Tensor.csr(name, a.shape, row_ptr, cols, matrix[rows, cols], index_bits)

    @property
    def index_bits(self) -> int:
        if self.storage != "csr" or self.col_idx is None:
            raise AttributeError(f"tensor {_q(self.name)} is not CSR")
        return 8 * self.col_idx.dtype.itemsize

    @property
    def elements(self) -> int:
        n = 1
        for d in self.dims:
            n *= int(d)
        return n

    @property
    def rows(self) -> int:
        return int(self.dims[0])

    @property
    def cols(self) -> int:
        n = 1
        for d in self.dims[1:]:
            n *= int(d)
        return n

    @property
    def nnz(self) -> int:
        """Stored nonzeros for CSR; the element count for dense."""
        if self.storage == "csr":
            assert self.values is not None
            return int(self.values.size)
        return self.elements

    @property
    def nbytes(self) -> int:
        """Bytes this tensor occupies in the data section (without padding)."""
        if self.storage == "csr":
            assert self.row_ptr is not None and self.col_idx is not None and self.values is not None
            return int(self.row_ptr.nbytes + self.col_idx.nbytes + self.values.nbytes)
        assert self.data is not None
        return int(self.data.nbytes)

    @property
    def sparsity(self) -> float:
        """Fraction of elements not stored (0.0 for dense; 1.0 for an empty CSR tensor)."""
        if self.storage != "csr":
            return 0.0
        n = self.elements
        return 1.0 - self.nnz / n if n else 1.0

    def to_dense(self) -> np.ndarray:
        """The tensor as a dense numpy array of shape ``dims``."""
        if self.storage == "dense":
            assert self.data is not None
            return np.asarray(self.data).reshape(self.dims)
        assert self.row_ptr is not None and self.col_idx is not None and self.values is not None
        out = np.zeros((self.rows, self.cols), dtype=np.float32)
        rows = np.repeat(np.arange(self.rows), np.diff(self.row_ptr.astype(np.int64)))
        out[rows, self.col_idx.astype(np.int64)] = self.values
        return out.reshape(self.dims)


@dataclass
class ModelFile:
    """A whole ``.spr`` model: graph inputs/outputs, nodes in topological order, constants, metadata."""

    inputs: list[ValueInfo]
    outputs: list[str]
    nodes: list[Node]
    tensors: list[Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)

    def tensor(self, name: str) -> Tensor | None:
        for t in self.tensors:
            if t.name == name:
                return t
        return None


# --------------------------------------------------------------------------- shared checks


def _check_csr(where: str, rows: int, cols: int, nnz: int, row_ptr: np.ndarray, col: np.ndarray) -> None:
    """CSR invariants (spec §3.4), in the C++ reader's order."""
    if int(row_ptr[0]) != 0:
        raise FormatError(_at(where, f"CSR row_ptr[0] is {int(row_ptr[0])}, must be 0"))
    rp = row_ptr.astype(np.int64)
    if rows:
        dec = np.flatnonzero(rp[1:] < rp[:-1])
        if dec.size:
            r = int(dec[0])
            raise FormatError(
                _at(where, f"CSR row_ptr decreases at row {r} ({int(rp[r])} then {int(rp[r + 1])})")
            )
    if int(rp[rows]) != nnz:
        raise FormatError(_at(where, f"CSR row_ptr[rows] is {int(rp[rows])}, must equal nnz {nnz}"))
    if nnz == 0:
        return
    c = col.astype(np.int64)
    # First offending element in storage order, as the C++ loop finds it.
    out_of_range = c >= cols
    not_increasing = np.zeros(nnz, dtype=bool)
    not_increasing[1:] = c[1:] <= c[:-1]
    not_increasing[rp[:-1][rp[:-1] < nnz]] = False  # the first element of a row has no predecessor
    bad = np.flatnonzero(out_of_range | not_increasing)
    if bad.size:
        k = int(bad[0])
        row = int(np.searchsorted(rp, k, side="right")) - 1
        if out_of_range[k]:
            raise FormatError(
                _at(where, f"CSR column index {int(c[k])} out of range (cols {cols}) in row {row}")
            )
        raise FormatError(
            _at(
                where,
                f"CSR column indices not strictly increasing in row {row} "
                f"({int(c[k])} after {int(c[k - 1])})",
            )
        )


def _check_names(
    inputs: Sequence[ValueInfo], outputs: Sequence[str], nodes: Sequence[Node], tensor_names: Sequence[str]
) -> None:
    """Unique names, references to earlier producers only, graph outputs that exist."""
    node_names: set[str] = set()
    for node in nodes:
        if node.name and node.name in node_names:
            raise FormatError(f"duplicate node name {_q(node.name)}")
        node_names.add(node.name)
    every: set[str] = set()
    produced: set[str] = set()

    def add(name: str) -> None:
        if name in every:
            raise FormatError(f"duplicate tensor name {_q(name)}")
        every.add(name)

    for vi in inputs:
        add(vi.name)
    for name in tensor_names:
        add(name)
    for node in nodes:
        for out in node.outputs:
            add(out)
            produced.add(out)
    available = {vi.name for vi in inputs} | set(tensor_names)
    for i, node in enumerate(nodes):
        where = f"node {_q(node.name)}" if node.name else f"node #{i}"
        for name in node.inputs:
            if not name or name in available:
                continue
            if name in produced:
                raise FormatError(
                    f"{where} input {_q(name)} is not produced before it is used "
                    "(nodes must be in topological order; a cycle is an error)"
                )
            raise FormatError(f"{where} input {_q(name)} is not a graph input, constant or node output")
        available.update(node.outputs)
    graph_inputs = {vi.name for vi in inputs}
    for out in outputs:
        if out not in graph_inputs and out not in produced:
            raise FormatError(f"graph output {_q(out)} is not a graph input or node output")


# --------------------------------------------------------------------------- writer


class _Body:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u32(self, v: int) -> None:
        self.parts.append(struct.pack("<I", v))

    def u64(self, v: int) -> None:
        self.parts.append(struct.pack("<Q", v))

    def i64(self, v: int) -> None:
        self.parts.append(struct.pack("<q", v))

    def f64(self, v: float) -> None:
        self.parts.append(struct.pack("<d", v))

    def str(self, s: str, where: str) -> None:
        if not isinstance(s, str):
            raise FormatError(_at(where, f"expected a string, got {type(s).__name__}"))
        b = s.encode("utf-8")
        if len(b) > MAX_STRING_LENGTH:
            raise FormatError(_at(where, f"string length {len(b)} exceeds the limit {MAX_STRING_LENGTH}"))
        self.u32(len(b))
        self.parts.append(b)

    def value(self, v: Any, where: str) -> None:
        if isinstance(v, (bool, int, np.integer, np.bool_)):
            self.u32(_INT)
            self.i64(_check_i64(int(v), where))
        elif isinstance(v, (float, np.floating)):
            self.u32(_FLOAT)
            self.f64(float(v))
        elif isinstance(v, str):
            self.u32(_STRING)
            self.str(v, where)
        elif isinstance(v, (Sequence, np.ndarray)) and not isinstance(v, (bytes, bytearray)):
            items = list(v.reshape(-1)) if isinstance(v, np.ndarray) else list(v)
            if items and all(isinstance(x, str) for x in items):
                self.u32(_STRINGS)
                self.u64(len(items))
                for x in items:
                    self.str(x, where)
            elif all(isinstance(x, (bool, int, np.integer, np.bool_)) for x in items):
                self.u32(_INTS)
                self.u64(len(items))
                for x in items:
                    self.i64(_check_i64(int(x), where))
            elif all(isinstance(x, (bool, int, float, np.integer, np.bool_, np.floating)) for x in items):
                self.u32(_FLOATS)
                self.u64(len(items))
                for x in items:
                    self.f64(float(x))
            else:
                raise FormatError(_at(where, "a list value must hold only numbers or only strings"))
        else:
            raise FormatError(_at(where, f"unsupported value type {type(v).__name__}"))

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


def _check_i64(v: int, where: str) -> int:
    if not -(2**63) <= v <= _MAX_I64:
        raise FormatError(_at(where, f"integer {v} does not fit in int64"))
    return v


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def _tensor_buffers(t: Tensor, where: str) -> list[np.ndarray]:
    """The arrays of one tensor in file order, checked against its dims."""
    if t.dtype not in _DTYPE_CODES:
        raise FormatError(_at(where, f"unknown dtype {t.dtype!r}"))
    if t.storage not in _STORAGE_CODES:
        raise FormatError(_at(where, f"unknown storage {t.storage!r}"))
    if not 1 <= len(t.dims) <= MAX_RANK:
        raise FormatError(_at(where, f"rank {len(t.dims)} must be in [1, 8]"))
    for j, d in enumerate(t.dims):
        if not 0 <= int(d) <= _MAX_I64:
            raise FormatError(_at(where, f"dim {j} is {int(d)} (must be >= 0)"))
    if t.storage == "dense":
        if t.data is None:
            raise FormatError(_at(where, "dense tensor without data"))
        a = np.ascontiguousarray(t.data, dtype=_DTYPE_NUMPY[t.dtype])
        if a.size != t.elements:
            raise FormatError(
                _at(where, f"data has {a.size} elements, dims {tuple(t.dims)} need {t.elements}")
            )
        return [a]
    if t.dtype != "float32":
        raise FormatError(_at(where, f"CSR storage requires float32, got {t.dtype}"))
    if t.row_ptr is None or t.col_idx is None or t.values is None:
        raise FormatError(_at(where, "CSR tensor without row_ptr, col_idx or values"))
    bits = 8 * t.col_idx.dtype.itemsize
    if t.col_idx.dtype.kind != "u" or bits not in (16, 32):
        raise FormatError(_at(where, f"CSR index_bits {bits} must be 16 or 32"))
    row_ptr = np.ascontiguousarray(t.row_ptr, dtype="<u4").reshape(-1)
    col = np.ascontiguousarray(t.col_idx, dtype=f"<u{bits // 8}").reshape(-1)
    values = np.ascontiguousarray(t.values, dtype="<f4").reshape(-1)
    if row_ptr.size != t.rows + 1:
        raise FormatError(_at(where, f"CSR row_ptr has {row_ptr.size} entries, rows + 1 is {t.rows + 1}"))
    if col.size != values.size:
        raise FormatError(_at(where, f"CSR col_idx has {col.size} entries but values has {values.size}"))
    if values.size > _MAX_U32:
        raise FormatError(_at(where, f"CSR nnz {values.size} does not fit in 32 bits"))
    _check_csr(where, t.rows, t.cols, int(values.size), row_ptr, col)
    return [row_ptr, col, values]


def to_bytes(model: ModelFile, alignment: int = 64) -> bytes:
    """Encodes and validates ``model``; raises FormatError naming the first problem."""
    if alignment < 8 or alignment > 65536 or alignment & (alignment - 1):
        raise FormatError(f"header alignment {alignment} is not a power of two in [8, 65536]")
    body = _Body()
    body.u64(len(model.metadata))
    for key, value in model.metadata.items():
        body.str(key, "metadata key")
        body.value(value, f"metadata {_q(key)}")

    body.u64(len(model.inputs))
    for i, vi in enumerate(model.inputs):
        if not vi.name:
            raise FormatError(f"graph input #{i} has an empty name")
        where = f"graph input {_q(vi.name)}"
        body.str(vi.name, where)
        if vi.dtype not in _DTYPE_CODES:
            raise FormatError(_at(where, f"unknown dtype {vi.dtype!r}"))
        body.u32(_DTYPE_CODES[vi.dtype])
        if len(vi.shape) > MAX_RANK:
            raise FormatError(_at(where, f"rank {len(vi.shape)} exceeds 8"))
        body.u32(len(vi.shape))
        for j, d in enumerate(vi.shape):
            d = int(d)
            if d < 1 and d != -1:
                raise FormatError(
                    _at(where, f"dim {j} is {d} (must be >= 1, or -1 for a size given at run time)")
                )
            body.i64(_check_i64(d, where))

    body.u64(len(model.outputs))
    for i, name in enumerate(model.outputs):
        body.str(name, f"graph output #{i}")

    body.u64(len(model.nodes))
    for i, node in enumerate(model.nodes):
        where = f"node {_q(node.name)}" if node.name else f"node #{i}"
        body.str(node.name, where)
        if not node.op_type:
            raise FormatError(_at(where, "empty op_type"))
        body.str(node.op_type, where)
        body.u32(len(node.inputs))
        for name in node.inputs:
            body.str(name, where)
        body.u32(len(node.outputs))
        for k, name in enumerate(node.outputs):
            if not name:
                raise FormatError(_at(where, f"output #{k} has an empty name"))
            body.str(name, where)
        body.u32(len(node.attrs))
        for key, value in node.attrs.items():
            body.str(key, where)
            body.value(value, f"{where} attribute {_q(key)}")

    # Tensor buffers, each at an aligned offset of the data section, padded
    # with zeros to the alignment.
    data_parts: list[bytes] = []
    data_size = 0

    def place(array: np.ndarray) -> int:
        nonlocal data_size
        offset = data_size
        raw = array.tobytes()
        padded = _align(len(raw), alignment)
        data_parts.append(raw + bytes(padded - len(raw)))
        data_size += padded
        return offset

    body.u64(len(model.tensors))
    for i, t in enumerate(model.tensors):
        if not t.name:
            raise FormatError(f"tensor #{i} has an empty name")
        where = f"tensor {_q(t.name)}"
        buffers = _tensor_buffers(t, where)
        body.str(t.name, where)
        body.u32(_DTYPE_CODES[t.dtype])
        body.u32(len(t.dims))
        for d in t.dims:
            body.u64(int(d))
        body.u32(_STORAGE_CODES[t.storage])
        if t.storage == "dense":
            body.u64(place(buffers[0]))
            body.u64(buffers[0].nbytes)
        else:
            row_ptr, col, values = buffers
            body.u64(values.size)
            body.u32(8 * col.dtype.itemsize)
            body.u64(place(row_ptr))
            body.u64(place(col))
            body.u64(place(values))

    _check_names(model.inputs, model.outputs, model.nodes, [t.name for t in model.tensors])
    body_bytes = body.getvalue()
    data = b"".join(data_parts)
    data_offset = _align(HEADER_SIZE + len(body_bytes), alignment)
    header = _HEADER.pack(
        MAGIC,
        VERSION,
        alignment,
        0,
        len(body_bytes),
        data_offset,
        len(data),
        zlib.crc32(body_bytes),
        zlib.crc32(data),
    )
    return header + body_bytes + bytes(data_offset - HEADER_SIZE - len(body_bytes)) + data


def write(model: ModelFile, path: str | os.PathLike[str], alignment: int = 64) -> None:
    """Writes atomically: a temporary file in the same folder, fsync, then rename over ``path``.

    On any error the temporary file is removed and an existing file at ``path`` is untouched.
    """
    blob = to_bytes(model, alignment)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".spr-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # Make the rename itself durable (POSIX); not possible or needed everywhere.
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --------------------------------------------------------------------------- reader


class _Reader:
    """Bounded cursor over the body; the same refusals as BodyReader in reader.cc."""

    def __init__(self, buf: memoryview, start: int, size: int) -> None:
        self.buf = buf
        self.pos = start
        self.end = start + size

    def remaining(self) -> int:
        return self.end - self.pos

    def _need(self, n: int, where: str, what: str) -> None:
        if n > self.remaining():
            raise FormatError(_at(where, f"body ends before {what}"))

    def u32(self, where: str, what: str) -> int:
        self._need(4, where, what)
        (v,) = struct.unpack_from("<I", self.buf, self.pos)
        self.pos += 4
        return v

    def u64(self, where: str, what: str) -> int:
        self._need(8, where, what)
        (v,) = struct.unpack_from("<Q", self.buf, self.pos)
        self.pos += 8
        return v

    def i64(self, where: str, what: str) -> int:
        self._need(8, where, what)
        (v,) = struct.unpack_from("<q", self.buf, self.pos)
        self.pos += 8
        return v

    def f64(self, where: str, what: str) -> float:
        self._need(8, where, what)
        (v,) = struct.unpack_from("<d", self.buf, self.pos)
        self.pos += 8
        return v

    def str(self, where: str, what: str) -> str:
        n = self.u32(where, what)
        if n > MAX_STRING_LENGTH:
            raise FormatError(_at(where, f"{what} string length {n} exceeds the limit {MAX_STRING_LENGTH}"))
        self._need(n, where, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(_at(where, f"{what} is not valid UTF-8")) from None
        self.pos += n
        return s

    def count(self, n: int, min_item: int, where: str, what: str) -> int:
        if n > self.remaining() // min_item:
            raise FormatError(
                _at(where, f"{what} {n} exceeds what the remaining {self.remaining()} body bytes can hold")
            )
        return n

    def value(self, where: str) -> Any:
        t = self.u32(where, "value type")
        if t == _INT:
            return self.i64(where, "INT value")
        if t == _FLOAT:
            return self.f64(where, "FLOAT value")
        if t == _STRING:
            return self.str(where, "STRING value")
        if t == _INTS:
            n = self.count(self.u64(where, "INTS count"), 8, where, "INTS count")
            return [self.i64(where, "INTS value") for _ in range(n)]
        if t == _FLOATS:
            n = self.count(self.u64(where, "FLOATS count"), 8, where, "FLOATS count")
            return [self.f64(where, "FLOATS value") for _ in range(n)]
        if t == _STRINGS:
            n = self.count(self.u64(where, "STRINGS count"), _MIN_STRING, where, "STRINGS count")
            return [self.str(where, "STRINGS value") for _ in range(n)]
        raise FormatError(_at(where, f"unknown value type {t}"))

    def dtype(self, where: str) -> str:
        d = self.u32(where, "dtype")
        if d not in _DTYPE_NAMES:
            raise FormatError(_at(where, f"unknown dtype {d}"))
        return _DTYPE_NAMES[d]


def from_bytes(data: bytes | bytearray | memoryview, verify: bool = True) -> ModelFile:
    """Parses and validates a whole file; raises FormatError naming the first problem.

    ``verify=False`` skips only the data-section CRC (the body CRC is always checked).
    Tensor arrays are read-only views of ``data``.
    """
    buf = memoryview(data).cast("B")
    size = len(buf)
    if size < HEADER_SIZE:
        raise FormatError(f"file too small: {size} bytes, the header alone is 48")
    magic, version, alignment, flags, body_size, data_offset, data_size, body_crc, data_crc = (
        _HEADER.unpack_from(buf, 0)
    )
    if magic != MAGIC:
        raise FormatError('bad magic: not a .spr file (expected "SPRT")')
    if version != VERSION:
        raise FormatError(f"unsupported version {version} (this reader knows version 1)")
    if alignment < 8 or alignment > 65536 or alignment & (alignment - 1):
        raise FormatError(f"header alignment {alignment} is not a power of two in [8, 65536]")
    if flags != 0:
        raise FormatError(f"header flags {flags} must be 0")
    if data_offset > size or data_size != size - data_offset:
        raise FormatError(f"header data_offset {data_offset} + data_size {data_size} != file size {size}")
    if data_offset < HEADER_SIZE or body_size > data_offset - HEADER_SIZE:
        raise FormatError(f"header body_size {body_size} does not fit before data_offset {data_offset}")
    if data_offset % alignment:
        raise FormatError(f"header data_offset {data_offset} is not a multiple of alignment {alignment}")
    body_end = HEADER_SIZE + body_size
    nonzero = np.flatnonzero(np.frombuffer(buf, np.uint8, data_offset - body_end, body_end))
    if nonzero.size:
        raise FormatError(
            f"nonzero padding byte at offset {body_end + int(nonzero[0])} between body and data"
        )
    actual = zlib.crc32(buf[HEADER_SIZE:body_end])
    if actual != body_crc:
        raise FormatError(f"body checksum mismatch: stored {body_crc:08x}, computed {actual:08x}")
    if verify:
        actual = zlib.crc32(buf[data_offset:])
        if actual != data_crc:
            raise FormatError(f"data checksum mismatch: stored {data_crc:08x}, computed {actual:08x}")

    r = _Reader(buf, HEADER_SIZE, body_size)
    metadata: dict[str, Any] = {}
    n = r.count(r.u64("", "metadata count"), _MIN_METADATA, "", "metadata count")
    for i in range(n):
        key = r.str(f"metadata #{i}", "key")
        if key in metadata:
            raise FormatError(f"duplicate metadata key {_q(key)}")
        metadata[key] = r.value(f"metadata {_q(key)}")

    inputs: list[ValueInfo] = []
    n = r.count(r.u64("", "graph input count"), _MIN_INPUT, "", "graph input count")
    for i in range(n):
        label = f"graph input #{i}"
        name = r.str(label, "name")
        if not name:
            raise FormatError(f"{label} has an empty name")
        where = f"graph input {_q(name)}"
        dtype = r.dtype(where)
        rank = r.u32(where, "rank")
        if rank > MAX_RANK:
            raise FormatError(_at(where, f"rank {rank} exceeds 8"))
        shape = []
        for j in range(rank):
            d = r.i64(where, "dim")
            if d < 1 and d != -1:
                raise FormatError(
                    _at(where, f"dim {j} is {d} (must be >= 1, or -1 for a size given at run time)")
                )
            shape.append(d)
        inputs.append(ValueInfo(name, tuple(shape), dtype))

    n = r.count(r.u64("", "graph output count"), _MIN_OUTPUT, "", "graph output count")
    outputs = [r.str(f"graph output #{i}", "name") for i in range(n)]

    nodes: list[Node] = []
    n = r.count(r.u64("", "node count"), _MIN_NODE, "", "node count")
    for i in range(n):
        label = f"node #{i}"
        name = r.str(label, "name")
        where = f"node {_q(name)}" if name else label
        op_type = r.str(where, "op_type")
        if not op_type:
            raise FormatError(_at(where, "empty op_type"))
        k = r.count(r.u32(where, "input count"), _MIN_STRING, where, "input count")
        node_inputs = [r.str(where, "input name") for _ in range(k)]
        k = r.count(r.u32(where, "output count"), _MIN_STRING, where, "output count")
        node_outputs = []
        for j in range(k):
            out = r.str(where, "output name")
            if not out:
                raise FormatError(_at(where, f"output #{j} has an empty name"))
            node_outputs.append(out)
        k = r.count(r.u32(where, "attribute count"), _MIN_ATTR, where, "attribute count")
        attrs: dict[str, Any] = {}
        for _ in range(k):
            key = r.str(where, "attribute key")
            if key in attrs:
                raise FormatError(_at(where, f"duplicate attribute key {_q(key)}"))
            attrs[key] = r.value(f"{where} attribute {_q(key)}")
        nodes.append(Node(op_type, node_inputs, node_outputs, attrs, name))

    data_base = data_offset
    spans: list[tuple[int, int]] = []

    def buffer(where: str, what: str, offset: int, nbytes: int) -> int:
        if offset % alignment:
            raise FormatError(
                _at(where, f"{what} offset {offset} is not a multiple of alignment {alignment}")
            )
        if offset > data_size or nbytes > data_size - offset:
            raise FormatError(
                _at(
                    where,
                    f"{what} buffer (offset {offset}, {nbytes} bytes) extends past the data section "
                    f"({data_size} bytes)",
                )
            )
        spans.append((offset, nbytes))
        return data_base + offset

    tensors: list[Tensor] = []
    n = r.count(r.u64("", "tensor count"), _MIN_TENSOR, "", "tensor count")
    for i in range(n):
        label = f"tensor #{i}"
        name = r.str(label, "name")
        if not name:
            raise FormatError(f"{label} has an empty name")
        where = f"tensor {_q(name)}"
        dtype = r.dtype(where)
        rank = r.u32(where, "rank")
        if not 1 <= rank <= MAX_RANK:
            raise FormatError(_at(where, f"rank {rank} must be in [1, 8]"))
        dims = []
        elements = 1
        overflow = False  # u64 arithmetic, as the C++ reader does it
        for j in range(rank):
            d = r.u64(where, "dim")
            if d > _MAX_I64:
                raise FormatError(_at(where, f"dim {j} is {d}, too large"))
            dims.append(d)
            elements *= d
            if elements > _MAX_U64:
                overflow = True
                elements &= _MAX_U64
        if overflow or elements > _MAX_I64:
            raise FormatError(_at(where, "product of dims overflows"))
        storage = r.u32(where, "storage")
        esize = _DTYPE_NUMPY[dtype].itemsize
        if storage == _DENSE:
            offset = r.u64(where, "offset")
            nbytes = r.u64(where, "nbytes")
            if nbytes != elements * esize:
                raise FormatError(_at(where, f"nbytes {nbytes} != {elements} elements x {esize} bytes"))
            start = buffer(where, "data", offset, nbytes)
            array = np.frombuffer(buf, _DTYPE_NUMPY[dtype], elements, start).reshape(dims)
            tensors.append(Tensor(name, tuple(dims), dtype, "dense", data=array))
        elif storage == _CSR:
            nnz = r.u64(where, "nnz")
            bits = r.u32(where, "index_bits")
            rp_off = r.u64(where, "row_ptr_offset")
            ci_off = r.u64(where, "col_idx_offset")
            va_off = r.u64(where, "values_offset")
            if dtype != "float32":
                raise FormatError(_at(where, f"CSR storage requires float32, got {dtype}"))
            if bits not in (16, 32):
                raise FormatError(_at(where, f"CSR index_bits {bits} must be 16 or 32"))
            if nnz > _MAX_U32:
                raise FormatError(_at(where, f"CSR nnz {nnz} does not fit in 32 bits"))
            rows = dims[0]
            cols = 1  # product of dims[1:]; checked apart, as dims[0] may be 0
            for d in dims[1:]:
                cols *= d
                if cols > _MAX_I64:
                    raise FormatError(_at(where, "product of dims overflows"))
            if rows >= _MAX_U32:
                raise FormatError(_at(where, f"CSR rows {rows} too large"))
            rp_start = buffer(where, "row_ptr", rp_off, (rows + 1) * 4)
            ci_start = buffer(where, "col_idx", ci_off, nnz * (bits // 8))
            va_start = buffer(where, "values", va_off, nnz * 4)
            row_ptr = np.frombuffer(buf, "<u4", rows + 1, rp_start)
            col = np.frombuffer(buf, "<u2" if bits == 16 else "<u4", nnz, ci_start)
            values = np.frombuffer(buf, "<f4", nnz, va_start)
            _check_csr(where, rows, cols, nnz, row_ptr, col)
            tensors.append(
                Tensor(name, tuple(dims), dtype, "csr", row_ptr=row_ptr, col_idx=col, values=values)
            )
        else:
            raise FormatError(_at(where, f"unknown storage {storage}"))

    if r.remaining():
        raise FormatError(f"body has {r.remaining()} trailing bytes after the tensor table")

    # Bytes of the data section outside every buffer must be zero.
    pos = 0
    section = np.frombuffer(buf, np.uint8, data_size, data_offset)
    for offset, nbytes in sorted(spans) + [(data_size, 0)]:
        if offset > pos:
            nonzero = np.flatnonzero(section[pos:offset])
            if nonzero.size:
                raise FormatError(
                    f"nonzero padding byte at data offset {pos + int(nonzero[0])} outside every tensor buffer"
                )
        pos = max(pos, offset + nbytes)

    _check_names(inputs, outputs, nodes, [t.name for t in tensors])
    return ModelFile(inputs, outputs, nodes, tensors, metadata)


def read(path: str | os.PathLike[str], verify: bool = True) -> ModelFile:
    """Reads and validates a ``.spr`` file (memory-mapped; arrays are read-only views)."""
    import mmap

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < HEADER_SIZE:
            raise FormatError(f"'{os.fspath(path)}': file too small: {size} bytes, the header alone is 48")
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return from_bytes(mapped, verify)
    except FormatError as e:
        raise FormatError(f"'{os.fspath(path)}': {e}") from None
