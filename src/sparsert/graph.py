"""GraphBuilder: write a ``.spr`` model from numpy weights.

The exporters (``sparsert.export`` for PyTorch, ``sparsert.onnx`` for ONNX)
build graphs with it; users can too::

    b = sparsert.GraphBuilder("mlp")
    x = b.input("x", (-1, 784), dim_names=("batch", ""))
    h = b.node("Linear", [x, b.constant("fc1.w", w1, storage="auto"), b.constant("fc1.b", b1)])
    h = b.node("Relu", [h])       # fused into the Linear when the model loads
    y = b.node("Linear", [h, b.constant("fc2.w", w2), b.constant("fc2.b", b2)])
    b.output(y, "logits")
    b.save("mlp.spr")             # atomic: temp file + rename

Op types and attributes are listed in docs/spr-format.md (section 5). Constants
may be numpy arrays or ``scipy.sparse`` matrices (stored as CSR / BSR).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from sparsert import format as spr

# Weights at or above this sparsity are stored as CSR by storage="auto".
# Below it CSR is neither smaller (6 bytes per nonzero with 16-bit indices
# against 4 per dense weight) nor reliably faster than the dense kernels.
CSR_MIN_SPARSITY = 0.5

_NAME_RE = re.compile(r"[^0-9A-Za-z_.:/\-]")


class GraphBuilder:
    def __init__(self, name: str = "model", producer: str = "sparsert.GraphBuilder",
                 metadata: dict[str, Any] | None = None) -> None:
        from sparsert import __version__

        self.name = name
        self.metadata: dict[str, Any] = {
            "sparsert.producer": producer,
            "sparsert.version": __version__,
            "model.name": name,
        }
        if metadata:
            self.metadata.update(metadata)
        self._inputs: list[spr.ValueInfo] = []
        self._outputs: list[str] = []
        self._nodes: list[spr.Node] = []
        self._tensors: dict[str, spr.Tensor] = {}
        self._names: set[str] = set()
        self._node_names: set[str] = set()
        self._counter = 0

    # -- naming -------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        base = _NAME_RE.sub("_", base) or "t"
        if base not in self._names:
            return base
        i = 1
        while f"{base}_{i}" in self._names:
            i += 1
        return f"{base}_{i}"

    def _claim(self, name: str) -> str:
        if not name:
            raise ValueError("tensor names must be non-empty")
        if name in self._names:
            raise ValueError(f"tensor name {name!r} is already used")
        self._names.add(name)
        return name

    # -- graph --------------------------------------------------------------
    def input(self, name: str, shape: Sequence[int], dtype: str = "float32",
              dim_names: Sequence[str] | None = None) -> str:
        """Declare a graph input; -1 in ``shape`` means chosen at run time (``dim_names``
        may name those dims, e.g. ``("batch", "seq")``). ``dtype``: float32, int64, int32 or bool."""
        shape = tuple(int(d) for d in shape)
        if any(d < -1 or d == 0 for d in shape):
            raise ValueError(f"input {name!r}: dims must be >= 1 or -1, got {shape}")
        if dtype not in ("float32", "int32", "int64", "bool"):
            raise ValueError(f"input {name!r}: dtype must be float32, int32, int64 or bool, got {dtype!r}")
        names = tuple(dim_names) if dim_names is not None else ("",) * len(shape)
        if len(names) != len(shape):
            raise ValueError(f"input {name!r}: {len(names)} dim names for {len(shape)} dims")
        names = tuple(n if d == -1 else "" for n, d in zip(names, shape))
        self._inputs.append(spr.ValueInfo(self._claim(name), shape, dtype, names))
        return name

    def constant(self, name: str, array: Any, storage: str = "dense",
                 min_sparsity: float = CSR_MIN_SPARSITY, block: tuple[int, int] | None = None) -> str:
        """Add a constant tensor; returns its (unique) name.

        array: a numpy array (float -> float32; bool stays bool; int32 stays; other
            integers -> int64) or a ``scipy.sparse`` matrix (float32 weights).
        storage: "dense", "csr", "bsr" (blocks of ``block = (rows, cols)``), or
            "auto": sparse when the share of zeros is at least ``min_sparsity``
            (float32 tensors of rank >= 2 only) — BSR when ``block`` is given and
            divides the matrix; without ``block``, BSR with 4x1 blocks when the
            nonzeros come in such blocks closely enough that it is the smaller
            file (block-pruned weights); else CSR."""
        if isinstance(array, spr.Tensor):  # prebuilt (e.g. a CSR tensor of a 4-D conv weight)
            name = self._claim(self.unique_name(name))
            self._tensors[name] = spr.Tensor(**{**array.__dict__, "name": name})
            return name
        if hasattr(array, "tocsr") and hasattr(array, "nnz"):  # scipy.sparse, without importing scipy
            if storage in ("dense", "csr") and block is None and array.ndim == 2:
                # CSR straight from its arrays: a huge, mostly empty matrix is never densified
                m = array.tocsr(copy=True)
                m.sum_duplicates()
                m.sort_indices()
                name = self._claim(self.unique_name(name))
                self._tensors[name] = spr.Tensor.csr(name, m.shape, m.indptr, m.indices,
                                                     np.asarray(m.data, dtype=np.float32))
                return name
            array = np.asarray(array.toarray(), dtype=np.float32)
        arr = np.asarray(array)
        if arr.dtype == np.float64 or arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        elif arr.dtype in (np.int8, np.int16, np.uint8, np.uint16, np.uint32):
            arr = arr.astype(np.int64)
        if arr.dtype not in (np.float32, np.int32, np.int64, np.bool_):
            raise ValueError(f"constant {name!r}: unsupported dtype {arr.dtype}")
        # NaN in a constant is a broken weight (a diverged training run); +-Inf is legitimate
        # (attention-mask fill values, clamp bounds) and is kept.
        if arr.dtype == np.float32 and np.isnan(arr).any():
            bad = int(np.count_nonzero(np.isnan(arr)))
            raise ValueError(f"constant {name!r} has {bad} NaN value(s)")
        name = self._claim(self.unique_name(name))
        if storage == "auto":
            use_sparse = (
                arr.dtype == np.float32
                and arr.ndim >= 2
                and arr.size > 0
                and 1.0 - np.count_nonzero(arr) / arr.size >= min_sparsity
            )
            storage = "dense"
            if use_sparse:
                if block is None and _bsr4_smaller(arr):
                    storage, block = "bsr", (4, 1)
                else:
                    storage = "bsr" if block is not None and _divides(arr, block) else "csr"
        if storage in ("csr", "bsr"):
            if arr.dtype != np.float32 or arr.ndim < 1:
                raise ValueError(f"constant {name!r}: {storage.upper()} storage needs a float32 tensor")
            if storage == "bsr":
                if block is None:
                    raise ValueError(f"constant {name!r}: storage='bsr' needs block=(rows, cols)")
                tensor = spr.Tensor.bsr_from_dense(name, np.ascontiguousarray(arr), block)
            else:
                tensor = spr.Tensor.csr_from_dense(name, np.ascontiguousarray(arr))
        elif storage == "dense":
            tensor = spr.Tensor.dense(name, arr)
        else:
            raise ValueError(f"storage must be 'dense', 'csr', 'bsr' or 'auto', got {storage!r}")
        self._tensors[name] = tensor
        return name

    def node(self, op_type: str, inputs: Sequence[str | None], attrs: dict[str, Any] | None = None,
             name: str | None = None, outputs: int | Sequence[str] = 1) -> Any:
        """Add a node; returns its output name (or a tuple of names when several)."""
        if name is None:
            self._counter += 1
            name = f"{op_type.lower()}_{self._counter}"
        base = _NAME_RE.sub("_", name)
        node_name = base
        i = 1
        while node_name in self._node_names:
            node_name = f"{base}_{i}"
            i += 1
        self._node_names.add(node_name)
        ins = []
        for t in inputs:
            if t is None or t == "":
                ins.append("")
                continue
            if t not in self._names:
                raise ValueError(f"node {node_name!r} ({op_type}): unknown input tensor {t!r}")
            ins.append(t)
        if isinstance(outputs, int):
            if outputs < 1:
                raise ValueError("a node needs at least one output")
            out_names = [self.unique_name(node_name if outputs == 1 else f"{node_name}:{k}") for k in range(outputs)]
            out_names = [self._claim(n) for n in out_names]
        else:
            out_names = [self._claim(n) for n in outputs]
        self._nodes.append(spr.Node(op_type, ins, out_names, dict(attrs or {}), node_name))
        return out_names[0] if len(out_names) == 1 else tuple(out_names)

    def output(self, tensor: str, name: str | None = None) -> str:
        """Mark ``tensor`` as a graph output, renaming it to ``name`` if given."""
        if tensor not in self._names:
            raise ValueError(f"unknown tensor {tensor!r}")
        if name is not None and name != tensor:
            if name in self._names:
                raise ValueError(f"tensor name {name!r} is already used")
            producer = next((n for n in self._nodes if tensor in n.outputs), None)
            if producer is None:
                raise ValueError(f"only node outputs can be renamed; {tensor!r} is not one")
            self._names.discard(tensor)
            self._names.add(name)
            producer.outputs = [name if o == tensor else o for o in producer.outputs]
            for n in self._nodes:
                n.inputs = [name if i == tensor else i for i in n.inputs]
            self._outputs = [name if o == tensor else o for o in self._outputs]
            tensor = name
        self._outputs.append(tensor)
        return tensor

    def tensor(self, name: str) -> spr.Tensor:
        return self._tensors[name]

    # -- writing ------------------------------------------------------------
    def build(self) -> spr.ModelFile:
        if not self._outputs:
            raise ValueError("the graph has no outputs: call output()")
        # keep only constants that some node reads
        used = {i for n in self._nodes for i in n.inputs}
        tensors = [t for name, t in self._tensors.items() if name in used]
        return spr.ModelFile(
            inputs=list(self._inputs),
            outputs=list(self._outputs),
            nodes=list(self._nodes),
            tensors=tensors,
            metadata=dict(self.metadata),
        )

    def to_bytes(self) -> bytes:
        return spr.to_bytes(self.build())

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write atomically (temp file in the same folder + rename), with the user's umask."""
        spr.write(self.build(), path)
        return os.fspath(path)

    def load(self, threads: int | None = None, tune: bool = False, **options: Any) -> Any:
        """Load the graph into the native runtime without touching disk (options as
        :func:`sparsert.load_bytes`)."""
        from sparsert.runtime import load_bytes

        return load_bytes(self.to_bytes(), threads=threads, tune=tune, **options)


def _bsr4_smaller(arr: np.ndarray) -> bool:
    """True when 4x1-block BSR stores the ``[dim0, rest]`` matrix in fewer bytes than CSR."""
    if arr.ndim < 2 or arr.shape[0] % 4 or arr.size == 0:
        return False
    m = arr.reshape(arr.shape[0], -1)
    rows, cols = m.shape
    nonzero = m != 0
    blocks = int(np.count_nonzero(nonzero.reshape(rows // 4, 4, cols).any(axis=1)))
    index = 2 if cols <= 65536 else 4
    return blocks * (16 + index) < int(np.count_nonzero(nonzero)) * (4 + index)


def _divides(arr: np.ndarray, block: tuple[int, int]) -> bool:
    rows = arr.shape[0]
    cols = int(np.prod(arr.shape[1:])) if arr.ndim > 1 else 1
    return rows % int(block[0]) == 0 and cols % int(block[1]) == 0
