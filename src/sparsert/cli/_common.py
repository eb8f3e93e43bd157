"""Helpers shared by the commands: argument types, file checks, shapes, and .npy / .npz I/O
that is safe on untrusted files (names checked and sizes bounded before anything is read)."""

from __future__ import annotations

import argparse
import io
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

PROG = "sparsert"


class UsageError(Exception):
    """A command line that parses but makes no sense (exit status 2)."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def thread_count(text: str) -> int:
    """``--threads``: as ``threads=`` in Python, 0 = every core; more than the cores is capped."""
    value = non_negative_int(text)
    from sparsert import _native

    limit = int(_native.core().max_threads)
    if value > limit:
        raise argparse.ArgumentTypeError(f"at most {limit} threads, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    from sparsert.onnx import parse_input_shape

    try:
        return parse_input_shape(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def check_file(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such {what}: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"expected a {what}, got a directory: {path!r}")


def shape_map(pairs: Sequence[tuple[str, tuple[int, ...]]], what: str) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in pairs:
        if name in out:
            raise UsageError(f"{what} {name!r} is given twice")
        out[name] = shape
    return out


def model_shapes(model: Any, given: dict[str, tuple[int, ...]], batch: int | None = None) -> list[tuple[int, ...]]:
    """Concrete input shapes: ``given`` by name, else the declared shape with free dims = ``batch``
    (first dim) or 1."""
    names = [s.name for s in model.inputs]
    unknown = [n for n in given if n not in names]
    if unknown:
        raise UsageError(f"the model has no input(s) {unknown}; its inputs are {names}")
    shapes = []
    for spec in model.inputs:
        if spec.name in given:
            shape = given[spec.name]
            if len(shape) != len(spec.shape) or any(w >= 0 and w != g for w, g in zip(spec.shape, shape)):
                raise UsageError(f"input {spec.name!r}: shape {shape} does not fit the declared {spec}")
            shapes.append(tuple(shape))
            continue
        dims = [d if d >= 0 else (batch if (batch is not None and k == 0) else 1) for k, d in enumerate(spec.shape)]
        if batch is not None and spec.shape and spec.shape[0] >= 0 and spec.shape[0] != batch:
            raise UsageError(
                f"input {spec.name!r} has a fixed batch of {spec.shape[0]} ({spec}); --batch {batch} needs a "
                "model with a free batch dim (convert the ONNX model without --input-shape to keep it free)"
            )
        shapes.append(tuple(dims))
    return shapes


def random_inputs(model: Any, shapes: Sequence[tuple[int, ...]], seed: int) -> list[np.ndarray]:
    """Inputs of the model's dtypes: normal floats, small non-negative integers (valid as
    indices and token ids of a small vocabulary), random bools."""
    rng = np.random.default_rng(seed)
    out = []
    for spec, shape in zip(model.inputs, shapes):
        if spec.dtype == "float32":
            out.append(rng.standard_normal(shape).astype(np.float32))
        elif spec.dtype == "bool":
            out.append(rng.random(shape) < 0.5)
        else:
            out.append(rng.integers(0, 2, size=shape).astype(spec.dtype))
    return out


# --------------------------------------------------------------------------- .npy / .npz


def _memory_limit() -> int:
    """Bytes an input file may expand to: half the physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 1 << 32


def _read_npy(stream: Any, what: str, limit: int) -> np.ndarray:
    """One .npy array from a stream, its declared size checked before reading the data."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"{what}: unsupported .npy version {version}")
    if dtype.hasobject:
        raise ValueError(f"{what}: arrays of Python objects are not read (they would need pickle)")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > limit:
        raise ValueError(f"{what}: the array claims {nbytes} bytes, more than the {limit} allowed")
    data = stream.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"{what}: the file holds {len(data)} of the {nbytes} bytes its header promises (truncated?)")
    array = np.frombuffer(data, dtype=dtype, count=nbytes // max(dtype.itemsize, 1)) if nbytes else np.empty(0, dtype)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def load_arrays(path: str, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Reads a .npy (one input) or .npz (inputs by name) file. For a .npz the member names are
    checked against ``names`` before anything is decompressed, and every member's declared size is
    bounded."""
    check_file(path, "input file")
    limit = _memory_limit()
    try:
        if path.lower().endswith(".npz"):
            with zipfile.ZipFile(path) as zf:
                members = {m.filename[:-4] if m.filename.endswith(".npy") else m.filename: m for m in zf.infolist()}
                if len(names) == 1 and list(members) == ["arr_0"]:  # np.savez(f, x) without a name
                    members = {names[0]: members["arr_0"]}
                check_names(path, list(members), names)
                total = sum(m.file_size for m in members.values())
                if total > limit:
                    raise ValueError(f"its members expand to {total} bytes, more than the {limit} allowed")
                arrays = {}
                for name in names:
                    member = members[name]
                    with zf.open(member) as f:
                        arrays[name] = _read_npy(f, f"member {member.filename!r}", member.file_size)
            return arrays
        if len(names) != 1:
            raise UsageError(f"the model takes {len(names)} inputs {list(names)}; give them by name in one .npz file")
        with open(path, "rb") as f:
            return {names[0]: _read_npy(f, repr(path), min(limit, os.fstat(f.fileno()).st_size))}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {path!r} as .npy/.npz: {e or type(e).__name__}") from None


def check_names(path: str, found: Sequence[str], names: Sequence[str]) -> None:
    missing = [n for n in names if n not in found]
    unknown = [n for n in found if n not in names]
    if missing or unknown:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else [])
        raise ValueError(f"{'; '.join(parts)}; the model takes inputs {list(names)}")


def save_arrays(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes one array to .npy or several by name to .npz (any names, ``file`` and
    ``allow_pickle`` included), atomically."""
    from sparsert.format import write_bytes

    buf = io.BytesIO()
    if path.lower().endswith(".npy"):
        if len(arrays) != 1:
            raise UsageError(f"the model has {len(arrays)} outputs {list(arrays)}; write them to a .npz file")
        np.lib.format.write_array(buf, np.require(next(iter(arrays.values())), requirements="C"), allow_pickle=False)
    else:
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, a in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.require(a, requirements="C"), allow_pickle=False)
    write_bytes(buf.getvalue(), path)
