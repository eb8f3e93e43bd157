"""The ``.spr`` file format in numpy: the writer, and a thin reader.

``docs/spr-format.md`` is the normative spec. Validation has one
implementation, the C++ reader (``csrc/format/reader.cc``): :func:`from_bytes`
and :func:`read` go through it (``sparsert._core``, loaded on first use) and
turn its result into the classes below, whose arrays are read-only views of
the file's bytes; :func:`to_bytes` encodes, then has the same reader check
the result, so no file the runtime would refuse is ever written.

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
import stat
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
    "write_bytes",
    "from_bytes",
    "read",
    "MAGIC",
    "VERSION",
]

MAGIC = b"SPRT"
VERSION = 2
HEADER_SIZE = 48
MAX_STRING_LENGTH = 65536
MAX_RANK = 8

_HEADER = struct.Struct("<4sIIIQQQII")
assert _HEADER.size == HEADER_SIZE

# Value types (docs/spr-format.md §3.1).
_INT, _FLOAT, _STRING, _INTS, _FLOATS, _STRINGS = 1, 2, 3, 4, 5, 6

_DTYPE_CODES = {"float32": 1, "int32": 2, "int64": 3, "bool": 4}
_DTYPE_NUMPY = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "bool": np.dtype("?"),
}
_DENSE, _CSR, _BSR = 0, 1, 2
_STORAGE_CODES = {"dense": _DENSE, "csr": _CSR, "bsr": _BSR}
MAX_BLOCK_DIM = 64
_MAX_U32 = 0xFFFFFFFF
_MAX_I64 = 2**63 - 1


from sparsert.errors import FormatError  # noqa: E402  (one class for Python and C++ readers)


def _q(name: str) -> str:
    """A name quoted for a message; control characters escaped as the C++ reader does."""
    return "'" + "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or c == "\x7f" else c for c in name) + "'"


def _at(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


# --------------------------------------------------------------------------- model classes


@dataclass
class ValueInfo:
    """A graph input: name, shape (``-1`` = given at run time), dtype, and a name
    per dim (``"batch"``, ``"seq"``; ``""`` for fixed dims)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    dim_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.shape = tuple(int(d) for d in self.shape)
        if not self.dim_names:
            self.dim_names = ("",) * len(self.shape)
        self.dim_names = tuple(self.dim_names)


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
    """A constant: dense (``data``), CSR or BSR (``row_ptr``, ``col_idx``, ``values``).

    CSR / BSR tensors are float32 matrices of ``rows = dims[0]`` and
    ``cols = prod(dims[1:])``. BSR stores ``block = (block_rows, block_cols)``
    blocks: ``row_ptr`` runs over block rows, ``col_idx`` holds block columns
    and ``values`` has shape ``(nnz_blocks, block_rows, block_cols)``. Arrays
    read from a file are read-only views.
    """

    name: str
    dims: tuple[int, ...]
    dtype: str = "float32"
    storage: str = "dense"
    data: np.ndarray | None = None
    row_ptr: np.ndarray | None = None
    col_idx: np.ndarray | None = None
    values: np.ndarray | None = None
    block: tuple[int, int] = (1, 1)

    @staticmethod
    def dense(name: str, array: Any) -> Tensor:
        """A dense constant. Floats become float32, bools stay bool, int32 stays, other integers become int64."""
        a = np.asarray(array)
        if a.dtype.kind == "f":
            dtype = "float32"
        elif a.dtype == np.bool_:
            dtype = "bool"
        elif a.dtype == np.int32:
            dtype = "int32"
        elif a.dtype.kind in "iu":
            if a.dtype == np.uint64 and a.size and int(a.max()) > _MAX_I64:
                raise FormatError(f"tensor {_q(name)}: uint64 values do not fit in int64")
            dtype = "int64"
        else:
            raise FormatError(f"tensor {_q(name)}: unsupported array dtype {a.dtype}")
        # np.require, not np.ascontiguousarray: the latter turns a 0-d array into shape (1,)
        a = np.require(a, dtype=_DTYPE_NUMPY[dtype], requirements="C")
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
        col, bits = _index_array(name, col_idx, cols, index_bits)
        return Tensor(
            name=name,
            dims=dims,
            dtype="float32",
            storage="csr",
            row_ptr=np.ascontiguousarray(row_ptr, dtype="<u4"),
            col_idx=col,
            values=np.ascontiguousarray(values, dtype="<f4"),
        )

    @staticmethod
    def bsr(
        name: str,
        dims: Sequence[int],
        block: tuple[int, int],
        row_ptr: Any,
        col_idx: Any,
        values: Any,
        index_bits: int | None = None,
    ) -> Tensor:
        """A float32 BSR constant of ``block = (rows, cols)`` blocks (each 1..64)."""
        dims = tuple(int(d) for d in dims)
        br, bc = (int(block[0]), int(block[1]))
        cols = int(np.prod(dims[1:], dtype=object)) if dims else 0
        col, _ = _index_array(name, col_idx, max(cols // max(bc, 1), 1), index_bits)
        vals = np.ascontiguousarray(values, dtype="<f4").reshape(-1, br, bc)
        return Tensor(
            name=name,
            dims=dims,
            dtype="float32",
            storage="bsr",
            row_ptr=np.ascontiguousarray(row_ptr, dtype="<u4"),
            col_idx=col,
            values=vals,
            block=(br, bc),
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

    @staticmethod
    def bsr_from_dense(name: str, array: Any, block: tuple[int, int], index_bits: int | None = None) -> Tensor:
        """Packs the blocks with any nonzero of a float array as BSR. The matrix
        ``[dims[0], prod(dims[1:])]`` must be a whole number of blocks."""
        a = np.asarray(array, dtype=np.float32)
        br, bc = int(block[0]), int(block[1])
        if a.ndim == 0 or not (1 <= br <= MAX_BLOCK_DIM and 1 <= bc <= MAX_BLOCK_DIM):
            raise FormatError(f"tensor {_q(name)}: BSR needs rank >= 1 and block dims in [1, {MAX_BLOCK_DIM}]")
        rows = a.shape[0]
        matrix = a.reshape(rows, -1) if rows else a.reshape(0, int(np.prod(a.shape[1:])))
        cols = matrix.shape[1]
        if rows % br or cols % bc:
            raise FormatError(
                f"tensor {_q(name)}: a {rows}x{cols} matrix is not a whole number of {br}x{bc} blocks"
            )
        blocks = matrix.reshape(rows // br, br, cols // bc, bc).transpose(0, 2, 1, 3)
        present = np.any(blocks != 0, axis=(2, 3))
        brow, bcol = np.nonzero(present)
        row_ptr = np.zeros(rows // br + 1, dtype=np.int64)
        np.cumsum(np.bincount(brow, minlength=rows // br), out=row_ptr[1:])
        return Tensor.bsr(name, a.shape, (br, bc), row_ptr, bcol, blocks[brow, bcol], index_bits)

    @property
    def index_bits(self) -> int:
        if self.storage == "dense" or self.col_idx is None:
            raise AttributeError(f"tensor {_q(self.name)} is not CSR / BSR")
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
        """Stored values: nonzeros for CSR, blocks x block size for BSR, elements for dense."""
        if self.storage != "dense":
            assert self.values is not None
            return int(self.values.size)
        return self.elements

    @property
    def nbytes(self) -> int:
        """Bytes this tensor occupies in the data section (without padding)."""
        if self.storage != "dense":
            assert self.row_ptr is not None and self.col_idx is not None and self.values is not None
            return int(self.row_ptr.nbytes + self.col_idx.nbytes + self.values.nbytes)
        assert self.data is not None
        return int(self.data.nbytes)

    @property
    def sparsity(self) -> float:
        """Fraction of elements not stored (0.0 for dense; 1.0 for an empty CSR tensor)."""
        if self.storage == "dense":
            return 0.0
        n = self.elements
        return 1.0 - self.nnz / n if n else 1.0

    def to_dense(self) -> np.ndarray:
        """The tensor as a dense numpy array of shape ``dims``."""
        if self.storage == "dense":
            assert self.data is not None
            return np.asarray(self.data).reshape(self.dims)
        assert self.row_ptr is not None and self.col_idx is not None and self.values is not None
        counts = np.diff(self.row_ptr.astype(np.int64))
        if self.storage == "csr":
            out = np.zeros((self.rows, self.cols), dtype=np.float32)
            rows = np.repeat(np.arange(self.rows), counts)
            out[rows, self.col_idx.astype(np.int64)] = self.values
            return out.reshape(self.dims)
        br, bc = self.block
        blocks = np.zeros((self.rows // br, self.cols // bc, br, bc), dtype=np.float32)
        brow = np.repeat(np.arange(self.rows // br), counts)
        blocks[brow, self.col_idx.astype(np.int64)] = np.asarray(self.values).reshape(-1, br, bc)
        return blocks.transpose(0, 2, 1, 3).reshape(self.dims)

    def to_scipy(self) -> Any:
        """The tensor as a ``scipy.sparse`` matrix over ``[rows, cols]`` (CSR or BSR; dense
        tensors give a CSR matrix of their nonzeros). Needs scipy."""
        import scipy.sparse

        if self.storage == "csr":
            return scipy.sparse.csr_matrix(
                (np.asarray(self.values), np.asarray(self.col_idx, dtype=np.int64),
                 np.asarray(self.row_ptr, dtype=np.int64)),
                shape=(self.rows, self.cols),
            )
        if self.storage == "bsr":
            return scipy.sparse.bsr_matrix(
                (np.asarray(self.values), np.asarray(self.col_idx, dtype=np.int64),
                 np.asarray(self.row_ptr, dtype=np.int64)),
                shape=(self.rows, self.cols), blocksize=self.block,
            )
        return scipy.sparse.csr_matrix(self.to_dense().reshape(self.rows, -1))


def _index_array(name: str, col_idx: Any, cols: int, index_bits: int | None) -> tuple[np.ndarray, int]:
    if index_bits is None:
        index_bits = 16 if cols <= 65536 else 32
    if index_bits not in (16, 32):
        raise FormatError(f"tensor {_q(name)}: index_bits {index_bits} must be 16 or 32")
    col = np.asarray(col_idx)
    if col.size and (int(col.min()) < 0 or int(col.max()) >= 2**index_bits):
        raise FormatError(f"tensor {_q(name)}: column indices do not fit in {index_bits} bits")
    return np.ascontiguousarray(col, dtype="<u2" if index_bits == 16 else "<u4").reshape(-1), index_bits


@dataclass
class ModelFile:
    """A whole ``.spr`` model: graph inputs/outputs, nodes in topological order, constants, metadata."""

    inputs: list[ValueInfo]
    outputs: list[str]
    nodes: list[Node]
    tensors: list[Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION

    def tensor(self, name: str) -> Tensor | None:
        for t in self.tensors:
            if t.name == name:
                return t
        return None


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
    """The arrays of one tensor in file order (their contents are checked by the reader)."""
    if t.dtype not in _DTYPE_CODES:
        raise FormatError(_at(where, f"unknown dtype {t.dtype!r}"))
    if t.storage not in _STORAGE_CODES:
        raise FormatError(_at(where, f"unknown storage {t.storage!r}"))
    if len(t.dims) > MAX_RANK:
        raise FormatError(_at(where, f"rank {len(t.dims)} must be in [0, 8]"))
    for j, d in enumerate(t.dims):
        if not 0 <= int(d) <= _MAX_I64:
            raise FormatError(_at(where, f"dim {j} is {int(d)} (must be >= 0)"))
    if t.storage == "dense":
        if t.data is None:
            raise FormatError(_at(where, "dense tensor without data"))
        a = np.ascontiguousarray(t.data, dtype=_DTYPE_NUMPY[t.dtype])
        if a.size != t.elements:
            raise FormatError(_at(where, f"data has {a.size} elements, dims {tuple(t.dims)} need {t.elements}"))
        return [a]
    if t.dtype != "float32":
        raise FormatError(_at(where, f"{t.storage.upper()} storage requires float32, got {t.dtype}"))
    if t.row_ptr is None or t.col_idx is None or t.values is None:
        raise FormatError(_at(where, "sparse tensor without row_ptr, col_idx or values"))
    bits = 8 * t.col_idx.dtype.itemsize
    if t.col_idx.dtype.kind != "u" or bits not in (16, 32):
        raise FormatError(_at(where, f"index_bits {bits} must be 16 or 32"))
    row_ptr = np.ascontiguousarray(t.row_ptr, dtype="<u4").reshape(-1)
    col = np.ascontiguousarray(t.col_idx, dtype=f"<u{bits // 8}").reshape(-1)
    values = np.ascontiguousarray(t.values, dtype="<f4").reshape(-1)
    block = t.block[0] * t.block[1] if t.storage == "bsr" else 1
    row_blocks = t.rows // t.block[0] if t.storage == "bsr" and t.dims else (t.rows if t.dims else 0)
    if row_ptr.size != row_blocks + 1:
        raise FormatError(_at(where, f"{t.storage.upper()} row_ptr has {row_ptr.size} entries, rows + 1 is {row_blocks + 1}"))
    if col.size * block != values.size:
        raise FormatError(_at(where, f"col_idx has {col.size} entries but values has {values.size}"))
    if col.size > _MAX_U32:
        raise FormatError(_at(where, f"nnz {col.size} does not fit in 32 bits"))
    return [row_ptr, col, values]


def _encode(model: ModelFile, alignment: int) -> bytes:
    if alignment < 8 or alignment > 65536 or alignment & (alignment - 1):
        raise FormatError(f"header alignment {alignment} is not a power of two in [8, 65536]")
    body = _Body()
    body.u64(len(model.metadata))
    for key, value in model.metadata.items():
        body.str(key, "metadata key")
        body.value(value, f"metadata {_q(key)}")

    body.u64(len(model.inputs))
    for i, vi in enumerate(model.inputs):
        where = f"graph input {_q(vi.name)}" if vi.name else f"graph input #{i}"
        body.str(vi.name, where)
        if vi.dtype not in _DTYPE_CODES:
            raise FormatError(_at(where, f"unknown dtype {vi.dtype!r}"))
        body.u32(_DTYPE_CODES[vi.dtype])
        if len(vi.shape) > MAX_RANK:
            raise FormatError(_at(where, f"rank {len(vi.shape)} exceeds 8"))
        body.u32(len(vi.shape))
        for d in vi.shape:
            body.i64(_check_i64(int(d), where))
        names = tuple(vi.dim_names) if vi.dim_names else ("",) * len(vi.shape)
        if len(names) != len(vi.shape):
            raise FormatError(_at(where, f"{len(names)} dim names for {len(vi.shape)} dims"))
        for name in names:
            body.str(name, where)

    body.u64(len(model.outputs))
    for i, name in enumerate(model.outputs):
        body.str(name, f"graph output #{i}")

    body.u64(len(model.nodes))
    for i, node in enumerate(model.nodes):
        where = f"node {_q(node.name)}" if node.name else f"node #{i}"
        body.str(node.name, where)
        body.str(node.op_type, where)
        body.u32(len(node.inputs))
        for name in node.inputs:
            body.str(name, where)
        body.u32(len(node.outputs))
        for name in node.outputs:
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
        where = f"tensor {_q(t.name)}" if t.name else f"tensor #{i}"
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
            body.u64(col.size)
            body.u32(8 * col.dtype.itemsize)
            if t.storage == "bsr":
                body.u32(int(t.block[0]))
                body.u32(int(t.block[1]))
            body.u64(place(row_ptr))
            body.u64(place(col))
            body.u64(place(values))

    body_bytes = body.getvalue()
    data = b"".join(data_parts)
    data_offset = _align(HEADER_SIZE + len(body_bytes), alignment)
    header = _HEADER.pack(
        MAGIC, VERSION, alignment, 0, len(body_bytes), data_offset, len(data),
        zlib.crc32(body_bytes), zlib.crc32(data),
    )
    return header + body_bytes + bytes(data_offset - HEADER_SIZE - len(body_bytes)) + data


def to_bytes(model: ModelFile, alignment: int = 64) -> bytes:
    """Encodes ``model`` and validates the result with the runtime's reader;
    raises FormatError naming the first problem."""
    blob = _encode(model, alignment)
    _core().read_spr_buffer(blob, True)
    return blob


def _file_mode(path: str) -> int:
    """The mode a new file gets: an existing file's own, else 0o666 minus the umask."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(path).st_mode)
    umask = None
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
    if umask is None:  # no /proc: read it by setting it (restored at once)
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def write_bytes(blob: bytes, path: str | os.PathLike[str]) -> str:
    """Writes ``blob`` atomically: a temporary file in the target's folder, fsync, then
    rename over the target. A symlink at ``path`` is followed (its target is replaced,
    the link stays); the file gets the mode of the file it replaces, or ``0o666`` minus
    the umask. On any error the temporary file is removed and an existing file is
    untouched. Returns the path written."""
    path = os.fspath(path)
    target = os.path.realpath(path) if os.path.islink(path) else path
    folder = os.path.dirname(os.path.abspath(target))
    mode = _file_mode(target)
    fd, tmp = tempfile.mkstemp(prefix=".spr-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
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
    return path


def write(model: ModelFile, path: str | os.PathLike[str], alignment: int = 64) -> None:
    """Validates and writes ``model`` atomically (see :func:`write_bytes`)."""
    write_bytes(to_bytes(model, alignment), path)


# --------------------------------------------------------------------------- thin reader


def _core() -> Any:
    from sparsert import _native

    return _native.core()


def _from_core(d: dict[str, Any]) -> ModelFile:
    inputs = [ValueInfo(i["name"], tuple(i["shape"]), i["dtype"], tuple(i["dim_names"])) for i in d["inputs"]]
    nodes = [Node(n["op_type"], list(n["inputs"]), list(n["outputs"]), dict(n["attrs"]), n["name"]) for n in d["nodes"]]
    tensors = []
    for t in d["tensors"]:
        dims = tuple(int(x) for x in t["dims"])
        if t["storage"] == "dense":
            tensors.append(Tensor(t["name"], dims, t["dtype"], "dense", data=t["data"]))
        else:
            tensors.append(
                Tensor(t["name"], dims, t["dtype"], t["storage"], row_ptr=t["row_ptr"], col_idx=t["col_idx"],
                       values=t["values"], block=tuple(t["block"]))
            )
    return ModelFile(inputs, list(d["outputs"]), nodes, tensors, dict(d["metadata"]), version=int(d["version"]))


def from_bytes(data: bytes | bytearray | memoryview, verify: bool = True) -> ModelFile:
    """Parses and validates a whole file with the runtime's reader; raises FormatError
    naming the first problem. ``verify=False`` skips only the data-section CRC. Version 1
    files come back with their op types translated to version 2 names."""
    return _from_core(_core().read_spr_buffer(memoryview(data).cast("B"), bool(verify)))


def read(path: str | os.PathLike[str], verify: bool = True) -> ModelFile:
    """Reads and validates a ``.spr`` file (arrays are read-only views of a private copy)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path!r}")
    return _from_core(_core().read_spr_file(path, bool(verify)))
