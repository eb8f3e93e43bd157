"""The table of broken ``.spr`` files every reader must refuse.

``CORRUPTIONS`` is a list of ``(name, corrupt, expected)``: ``corrupt(valid_bytes) -> bad_bytes``
takes the bytes of ``valid_bytes()`` and returns a broken file, and ``expected`` is a substring of
the error message. The reader is the C++ one (``sparsert.format.from_bytes`` reads through
``sparsert._core``); tests/cpp/test_format.cc holds the same cases built by its own C++ byte
builder. Files are version 2 unless a spec says ``"version": 1``.

Files are made by a raw builder that is independent of ``sparsert.format`` (which refuses to
write broken files): a spec of plain values is encoded field by field with the correct CRCs, so
body corruptions change one field of the spec and get a file that is valid except for that field.
Header corruptions patch the bytes.
"""

from __future__ import annotations

import copy
import struct
import zlib
from typing import Any, Callable

ALIGNMENT = 64
HEADER = struct.Struct("<4sIIIQQQII")


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def i64(v: int) -> bytes:
    return struct.pack("<q", v)


def string(s: str | bytes, length: int | None = None) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return u32(len(b) if length is None else length) + b


# Typed values, already encoded (spec §3.1).
def v_int(v: int) -> bytes:
    return u32(1) + i64(v)


def v_float(v: float) -> bytes:
    return u32(2) + struct.pack("<d", v)


def v_str(s: str) -> bytes:
    return u32(3) + string(s)


def v_ints(vs: list[int], count: int | None = None) -> bytes:
    return u32(4) + u64(len(vs) if count is None else count) + b"".join(i64(v) for v in vs)


def v_floats(vs: list[float]) -> bytes:
    return u32(5) + u64(len(vs)) + b"".join(struct.pack("<d", v) for v in vs)


def v_strs(vs: list[str]) -> bytes:
    return u32(6) + u64(len(vs)) + b"".join(string(v) for v in vs)


def base_spec() -> dict[str, Any]:
    """A small valid model: two Linear layers (CSR 16- and 32-bit weights) and constants."""
    return {
        "metadata": [
            ("sparsert.producer", v_str("tests")),
            ("ints", v_ints([1, -2, 3])),
            ("floats", v_floats([0.5, -1.25])),
            ("strings", v_strs(["a", "bc"])),
            ("pi", v_float(3.25)),
            ("n", v_int(-7)),
        ],
        "inputs": [{"name": "x", "dtype": 1, "dims": [-1, 4]}],
        "outputs": ["y"],
        "nodes": [
            {
                "name": "fc1",
                "op_type": "Linear",
                "inputs": ["x", "w1", "b1"],
                "outputs": ["h"],
                "attrs": [("activation", v_str("relu"))],
            },
            {"name": "fc2", "op_type": "Linear", "inputs": ["h", "w2", ""], "outputs": ["y"], "attrs": []},
        ],
        "tensors": [
            {
                "name": "w1",
                "dtype": 1,
                "dims": [3, 4],
                "storage": 1,
                "index_bits": 16,
                "row_ptr": [0, 2, 2, 3],
                "col_idx": [0, 3, 1],
                "values": [1.0, 2.0, 3.0],
            },
            {"name": "b1", "dtype": 1, "dims": [3], "storage": 0, "data": struct.pack("<3f", 0.5, -0.5, 1.5)},
            {
                "name": "w2",
                "dtype": 1,
                "dims": [2, 3],
                "storage": 1,
                "index_bits": 32,
                "row_ptr": [0, 1, 3],
                "col_idx": [2, 0, 1],
                "values": [4.0, -5.0, 6.0],
            },
            {"name": "shape", "dtype": 3, "dims": [2], "storage": 0, "data": struct.pack("<2q", -1, 3)},
            {
                "name": "wb",
                "dtype": 1,
                "dims": [4, 4],
                "storage": 2,
                "index_bits": 16,
                "block": [2, 1],
                "row_ptr": [0, 2, 3],
                "col_idx": [0, 3, 1],
                "values": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            },
        ],
    }


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def build(spec: dict[str, Any]) -> bytes:
    """Encodes a spec with correct sizes and CRCs; keys like ``n_tensors`` or a tensor's
    ``offset``/``nbytes``/``nnz`` override the computed value, ``body_extra`` is appended
    to the body."""
    data = bytearray()

    def place(raw: bytes) -> int:
        offset = len(data)
        data.extend(raw + bytes(_align(len(raw)) - len(raw)))
        return offset

    body = bytearray()
    body += u64(spec.get("n_metadata", len(spec["metadata"])))
    for key, value in spec["metadata"]:
        body += string(key) + value
    body += u64(len(spec["inputs"]))
    version = spec.get("version", 2)
    for vi in spec["inputs"]:
        body += string(vi["name"]) + u32(vi["dtype"]) + u32(vi.get("rank", len(vi["dims"])))
        body += b"".join(i64(d) for d in vi["dims"])
        if version >= 2:
            body += b"".join(string(n) for n in vi.get("dim_names", [""] * len(vi["dims"])))
    body += u64(len(spec["outputs"]))
    for name in spec["outputs"]:
        body += string(name)
    body += u64(len(spec["nodes"]))
    for node in spec["nodes"]:
        body += string(node["name"]) + string(node["op_type"])
        body += u32(node.get("n_inputs", len(node["inputs"]))) + b"".join(string(s) for s in node["inputs"])
        body += u32(len(node["outputs"])) + b"".join(string(s) for s in node["outputs"])
        body += u32(len(node["attrs"])) + b"".join(string(k) + v for k, v in node["attrs"])
    body += u64(spec.get("n_tensors", len(spec["tensors"])))
    for t in spec["tensors"]:
        body += string(t["name"]) + u32(t["dtype"]) + u32(t.get("rank", len(t["dims"])))
        body += b"".join(u64(d) for d in t["dims"]) + u32(t["storage"])
        if "data" in t:
            offset = place(t["data"])
            body += u64(t.get("offset", offset)) + u64(t.get("nbytes", len(t["data"])))
        else:
            bits = t["index_bits"]
            block = t.get("block")
            rp = place(b"".join(u32(v) for v in t["row_ptr"]))
            ci_fmt = "<H" if bits == 16 else "<I"
            ci = place(b"".join(struct.pack(ci_fmt, v) for v in t["col_idx"]))
            va = place(b"".join(struct.pack("<f", v) for v in t["values"]))
            nnz = len(t["col_idx"]) if block else len(t["values"])
            body += u64(t.get("nnz", nnz)) + u32(bits)
            if block:
                body += u32(block[0]) + u32(block[1])
            body += u64(t.get("row_ptr_offset", rp)) + u64(t.get("col_idx_offset", ci))
            body += u64(t.get("values_offset", va))
    body += spec.get("body_extra", b"")
    body = bytes(body)[: len(body) - spec.get("body_cut", 0)]
    data_offset = _align(48 + len(body))
    header = HEADER.pack(
        b"SPRT", version, ALIGNMENT, 0, len(body), data_offset, len(data), zlib.crc32(body), zlib.crc32(data)
    )
    return header + body + bytes(data_offset - 48 - len(body)) + bytes(data)


def valid_bytes() -> bytes:
    return build(base_spec())


# --------------------------------------------------------------------------- byte patches


def _header(b: bytes) -> list[Any]:
    return list(HEADER.unpack_from(b, 0))


def _with_header(b: bytes, **fields: int) -> bytes:
    names = [
        "magic",
        "version",
        "alignment",
        "flags",
        "body_size",
        "data_offset",
        "data_size",
        "body_crc",
        "data_crc",
    ]
    h = _header(b)
    for k, v in fields.items():
        h[names.index(k)] = v
    return HEADER.pack(*h) + b[48:]


def fix_crcs(b: bytes) -> bytes:
    """Recomputes both CRCs from the header's sizes."""
    h = _header(b)
    body_size, data_offset = h[4], h[5]
    return _with_header(b, body_crc=zlib.crc32(b[48 : 48 + body_size]), data_crc=zlib.crc32(b[data_offset:]))


def _patch(b: bytes, offset: int, raw: bytes) -> bytes:
    return b[:offset] + raw + b[offset + len(raw) :]


def _body_end(b: bytes) -> int:
    return 48 + _header(b)[4]


def _data_offset(b: bytes) -> int:
    return _header(b)[5]


def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    """A corruption that rebuilds the base model with one field changed."""

    def corrupt(_: bytes) -> bytes:
        spec = copy.deepcopy(base_spec())
        change(spec)
        return build(spec)

    return corrupt


def _tensor(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in spec["tensors"] if t["name"] == name)


def _node(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in spec["nodes"] if n["name"] == name)


def _set_tensor(which: str, /, **fields: Any) -> Callable[[bytes], bytes]:
    return _edit(lambda s: _tensor(s, which).update(fields))


def _set_node(which: str, /, **fields: Any) -> Callable[[bytes], bytes]:
    return _edit(lambda s: _node(s, which).update(fields))


def _flip_data_value(b: bytes) -> bytes:
    """Changes one float of b1 (a valid value either way), leaving the stored CRC stale."""
    i = b.index(struct.pack("<3f", 0.5, -0.5, 1.5), _data_offset(b))
    return _patch(b, i, struct.pack("<f", 0.75))


CORRUPTIONS: list[tuple[str, Callable[[bytes], bytes], str]] = [
    # header
    ("empty_file", lambda b: b"", "file too small: 0 bytes"),
    ("header_only_47", lambda b: b[:47], "file too small: 47 bytes"),
    ("bad_magic", lambda b: b"GGUF" + b[4:], "bad magic"),
    ("version_3", lambda b: _with_header(b, version=3), "unsupported version 3"),
    ("version_0", lambda b: _with_header(b, version=0), "unsupported version 0"),
    ("alignment_3", lambda b: _with_header(b, alignment=3), "header alignment 3 is not a power of two"),
    ("alignment_4", lambda b: _with_header(b, alignment=4), "header alignment 4 is not a power of two"),
    ("alignment_0", lambda b: _with_header(b, alignment=0), "header alignment 0 is not a power of two"),
    ("alignment_2_17", lambda b: _with_header(b, alignment=1 << 17), "header alignment 131072"),
    ("flags_nonzero", lambda b: _with_header(b, flags=1), "header flags 1 must be 0"),
    ("truncated_data", lambda b: b[:-1], "file is truncated"),
    ("truncated_in_body", lambda b: b[:100], "file is truncated"),
    ("trailing_garbage", lambda b: b + b"\0", "!= file size"),
    ("data_offset_past_end", lambda b: _with_header(b, data_offset=len(b) + 64), "file is truncated"),
    ("onnx_file", lambda b: b"\x08\x07\x12\x07pytorch" + bytes(64), "looks like an ONNX model"),
    ("data_size_overflow", lambda b: _with_header(b, data_size=2**64 - 1), "!= file size"),
    (
        "body_size_past_data",
        lambda b: _with_header(b, body_size=2**64 - 8),
        "header body_size 18446744073709551608 does not fit before data_offset",
    ),
    (
        "data_offset_unaligned",
        lambda b: _with_header(b, alignment=65536),
        "is not a multiple of alignment 65536",
    ),
    ("nonzero_body_padding", lambda b: _patch(b, _body_end(b), b"\x01"), "between body and data"),
    (
        "nonzero_data_padding",
        lambda b: fix_crcs(_patch(b, len(b) - 1, b"\x01")),
        "nonzero padding byte at data offset",
    ),
    ("body_crc_mismatch", lambda b: _patch(b, 60, b"X"), "body checksum mismatch"),
    ("data_crc_mismatch", _flip_data_value, "data checksum mismatch"),
    # counts and strings
    (
        "huge_metadata_count",
        lambda b: fix_crcs(_patch(b, 48, u64(2**62))),
        "metadata count 4611686018427387904 exceeds what the remaining",
    ),
    ("huge_tensor_count", _edit(lambda s: s.update(n_tensors=2**40)), "tensor count 1099511627776 exceeds"),
    (
        "huge_ints_count",
        _edit(lambda s: s["metadata"].__setitem__(1, ("ints", v_ints([1], count=2**60)))),
        "metadata 'ints': INTS count 1152921504606846976 exceeds",
    ),
    (
        "huge_node_input_count",
        _set_node("fc1", n_inputs=2**31),
        "node 'fc1': input count 2147483648 exceeds",
    ),
    (
        "string_too_long",
        lambda b: fix_crcs(_patch(b, 56, u32(70000))),
        "metadata #0: key string length 70000 exceeds the limit 65536",
    ),
    (
        "string_past_body",
        _edit(lambda s: s.update(body_extra=string("", length=100), n_tensors=6)),
        "tensor #5: body ends before name",
    ),
    (
        "invalid_utf8",
        _edit(lambda s: s["metadata"].__setitem__(0, (b"\xff\xfe", v_int(1)))),
        "metadata #0: key is not valid UTF-8",
    ),
    (
        "unknown_value_type",
        _edit(lambda s: s["metadata"].__setitem__(5, ("n", u32(9) + i64(0)))),
        "metadata 'n': unknown value type 9",
    ),
    (
        "duplicate_metadata_key",
        _edit(lambda s: s["metadata"].append(("ints", v_int(1)))),
        "duplicate metadata key 'ints'",
    ),
    ("body_trailing_bytes", _edit(lambda s: s.update(body_extra=b"\0" * 8)), "body has 8 trailing bytes"),
    ("body_cut_short", _edit(lambda s: s.update(body_cut=8)), "tensor 'wb': body ends before values_offset"),
    # graph inputs
    ("input_empty_name", _edit(lambda s: s["inputs"][0].update(name="")), "graph input #0 has an empty name"),
    (
        "input_unknown_dtype",
        _edit(lambda s: s["inputs"][0].update(dtype=7)),
        "graph input 'x': unknown dtype 7",
    ),
    (
        "input_rank_9",
        _edit(lambda s: s["inputs"][0].update(dims=[1] * 9)),
        "graph input 'x': rank 9 exceeds 8",
    ),
    ("input_dim_0", _edit(lambda s: s["inputs"][0].update(dims=[-1, 0])), "graph input 'x': dim 1 is 0"),
    (
        "input_dim_minus_2",
        _edit(lambda s: s["inputs"][0].update(dims=[-2, 4])),
        "graph input 'x': dim 0 is -2",
    ),
    # tensors
    ("tensor_empty_name", _set_tensor("b1", name=""), "tensor #1 has an empty name"),
    ("tensor_unknown_dtype", _set_tensor("b1", dtype=9), "tensor 'b1': unknown dtype 9"),
    ("tensor_rank_0_size", _set_tensor("b1", dims=[]), "tensor 'b1': nbytes 12 != 1 elements x 4 bytes"),
    ("tensor_rank_9", _set_tensor("b1", dims=[1] * 9), "tensor 'b1': rank 9 must be in [0, 8]"),
    (
        "v1_tensor_rank_0",
        _edit(lambda s: (s.update(version=1), _tensor(s, "b1").update(dims=[]))),
        "tensor 'b1': rank 0 must be in [1, 8]",
    ),
    ("v1_bool_dtype", _edit(lambda s: (s.update(version=1), _tensor(s, "b1").update(dtype=4))), "unknown dtype 4"),
    ("bool_not_0_or_1", _set_tensor("b1", dtype=4, dims=[12]), "bool element 3 is not 0 or 1"),
    (
        "input_dim_name_on_fixed_dim",
        _edit(lambda s: s["inputs"][0].update(dim_names=["batch", "feat"])),
        "graph input 'x': dim 1 has a name but a fixed size",
    ),
    (
        "tensor_dim_too_large",
        _set_tensor("b1", dims=[2**63]),
        "tensor 'b1': dim 0 is 9223372036854775808, too large",
    ),
    (
        "dims_overflow_u64",
        _set_tensor("b1", dims=[2**32, 2**32, 3]),
        "tensor 'b1': product of dims overflows",
    ),
    ("dims_overflow_i64", _set_tensor("b1", dims=[2**62, 2]), "tensor 'b1': product of dims overflows"),
    (
        "csr_cols_overflow",
        _set_tensor("w1", dims=[0, 2**32, 2**32]),
        "tensor 'w1': product of dims overflows",
    ),
    ("unknown_storage", _set_tensor("b1", storage=3), "tensor 'b1': unknown storage 3"),
    ("v1_bsr_storage", _edit(lambda s: (s.update(version=1), _tensor(s, "b1").update(storage=2))),
     "tensor 'b1': unknown storage 2"),
    ("bsr_block_0", _set_tensor("wb", block=[0, 1]), "tensor 'wb': BSR block 0x1 must have dims in [1, 64]"),
    ("bsr_block_65", _set_tensor("wb", block=[65, 1]), "BSR block 65x1 must have dims in [1, 64]"),
    ("bsr_ragged", _set_tensor("wb", dims=[3, 4]), "tensor 'wb': BSR matrix 3x4 is not a whole number of 2x1 blocks"),
    ("bsr_column_out_of_range", _set_tensor("wb", col_idx=[0, 4, 1]), "BSR column index 4 out of range (cols 4)"),
    ("bsr_values_past_end", _set_tensor("wb", values_offset=4096), "tensor 'wb': values buffer (offset 4096"),
    ("dense_nbytes_mismatch", _set_tensor("b1", nbytes=8), "tensor 'b1': nbytes 8 != 3 elements x 4 bytes"),
    ("dense_nbytes_overflow", _set_tensor("b1", dims=[2**62 + 1], nbytes=4), "tensor 'b1': nbytes 4 !="),
    (
        "unaligned_buffer",
        _set_tensor("b1", offset=196),
        "tensor 'b1': data offset 196 is not a multiple of alignment 64",
    ),
    ("buffer_past_end", _set_tensor("b1", offset=1 << 20), "tensor 'b1': data buffer (offset 1048576"),
    (
        "buffer_offset_overflow",
        _set_tensor("b1", offset=2**64 - 64),
        "extends past the data section",
    ),
    (
        "csr_values_past_end",
        _set_tensor("w2", values_offset=1024),
        "tensor 'w2': values buffer (offset 1024, 12 bytes) extends past the data section (",
    ),
    ("csr_not_float32", _set_tensor("w1", dtype=2), "tensor 'w1': CSR storage requires float32, got int32"),
    ("csr_index_bits_8", _set_tensor("w1", index_bits=8), "tensor 'w1': CSR index_bits 8 must be 16 or 32"),
    ("csr_nnz_2_32", _set_tensor("w1", nnz=2**32), "tensor 'w1': CSR nnz 4294967296 does not fit in 32 bits"),
    (
        "csr_row_ptr_start",
        _set_tensor("w1", row_ptr=[1, 2, 2, 3]),
        "tensor 'w1': CSR row_ptr[0] is 1, must be 0",
    ),
    (
        "csr_row_ptr_not_monotone",
        _set_tensor("w1", row_ptr=[0, 2, 1, 3]),
        "tensor 'w1': CSR row_ptr decreases at row 1 (2 then 1)",
    ),
    (
        "csr_row_ptr_wrong_end",
        _set_tensor("w1", row_ptr=[0, 2, 2, 2]),
        "tensor 'w1': CSR row_ptr[rows] is 2, must equal nnz 3",
    ),
    (
        "csr_column_out_of_range",
        _set_tensor("w1", col_idx=[0, 4, 1]),
        "tensor 'w1': CSR column index 4 out of range (cols 4) in row 0",
    ),
    (
        "csr_column_out_of_range_32",
        _set_tensor("w2", col_idx=[70000, 0, 1]),
        "tensor 'w2': CSR column index 70000 out of range (cols 3) in row 0",
    ),
    (
        "csr_columns_unsorted",
        _set_tensor("w1", col_idx=[3, 0, 1]),
        "tensor 'w1': CSR column indices not strictly increasing in row 0 (0 after 3)",
    ),
    (
        "csr_columns_duplicate",
        _set_tensor("w2", col_idx=[2, 1, 1]),
        "tensor 'w2': CSR column indices not strictly increasing in row 1 (1 after 1)",
    ),
    # names and references
    ("duplicate_tensor_name", _set_tensor("b1", name="w1"), "duplicate tensor name 'w1'"),
    ("constant_named_like_input", _set_tensor("b1", name="x"), "duplicate tensor name 'x'"),
    ("duplicate_node_output", _set_node("fc2", outputs=["h"]), "duplicate tensor name 'h'"),
    ("duplicate_node_name", _set_node("fc2", name="fc1"), "duplicate node name 'fc1'"),
    (
        "dangling_reference",
        _set_node("fc1", inputs=["x", "nope", "b1"]),
        "node 'fc1' input 'nope' is not a graph input, constant or node output",
    ),
    (
        "forward_reference",
        _edit(lambda s: s["nodes"].reverse()),
        "node 'fc2' input 'h' is not produced before it is used",
    ),
    (
        "cycle",
        _set_node("fc1", inputs=["h", "w1", "b1"]),
        "node 'fc1' input 'h' is not produced before it is used (nodes must be in topological order",
    ),
    (
        "graph_output_missing",
        _edit(lambda s: s.update(outputs=["z"])),
        "graph output 'z' is not a graph input",
    ),
    (
        "duplicate_attribute_key",
        _set_node("fc1", attrs=[("activation", v_str("relu")), ("activation", v_str("none"))]),
        "node 'fc1': duplicate attribute key 'activation'",
    ),
    ("empty_op_type", _set_node("fc1", op_type=""), "node 'fc1': empty op_type"),
    ("empty_node_output", _set_node("fc1", outputs=[""]), "node 'fc1': output #0 has an empty name"),
]

# Cases that only the data checksum catches: accepted when the reader is told not to verify it.
VALID_WITHOUT_DATA_CHECK = {"data_crc_mismatch"}
