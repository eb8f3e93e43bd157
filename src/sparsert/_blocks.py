"""Block magnitude pruning in numpy, shared by ``sparsert.prune`` and ``convert(prune=...)``.

A weight is viewed as the matrix ``[rows = dims[0], cols = prod(dims[1:])]`` that the
``.spr`` CSR / BSR storage uses (for a conv weight ``[Cout, Cin/g, kH, kW]`` a column is
one input position ``(c, kh, kw)``). ``block = (bo, bi)`` groups ``bo`` consecutive
output rows and ``bi`` consecutive columns; ``(4, 1)`` is four output channels sharing one
input position (one activation load feeds four FMAs), ``(1, 1)`` is unstructured. Blocks
are ranked by their L2 norm; the last row / column of blocks may be partial.
"""

from __future__ import annotations

import numpy as np


def check_block(block: object) -> tuple[int, int]:
    """``block`` as a pair of ints in [1, 64], or ValueError."""
    try:
        values = tuple(block)  # type: ignore[arg-type]
        if len(values) != 2 or any(isinstance(v, bool) or int(v) != v for v in values):
            raise TypeError
        bo, bi = (int(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"block must be a pair (output, input) of ints, got {block!r}") from None
    if not (1 <= bo <= 64 and 1 <= bi <= 64):
        raise ValueError(f"block dims must be in [1, 64], got {block!r}")
    return bo, bi


def block_scores(w: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """L2 norm of every block: shape ``[ceil(rows / bo), ceil(cols / bi)]``."""
    bo, bi = block
    m = np.asarray(w, dtype=np.float64).reshape(w.shape[0], -1) if w.ndim > 1 else np.asarray(w).reshape(-1, 1)
    rows, cols = m.shape
    pr, pc = -rows % bo, -cols % bi
    padded = np.pad(m * m, ((0, pr), (0, pc)))
    return np.sqrt(padded.reshape((rows + pr) // bo, bo, (cols + pc) // bi, bi).sum(axis=(1, 3)))


def expand_block_mask(keep: np.ndarray, shape: tuple[int, ...], block: tuple[int, int]) -> np.ndarray:
    """A per-block keep mask expanded to the weight's shape."""
    bo, bi = block
    rows = shape[0]
    cols = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    full = np.repeat(np.repeat(keep, bo, axis=0), bi, axis=1)[:rows, :cols]
    return full.reshape(shape)


def block_magnitude_mask(w: np.ndarray, sparsity: float, block: tuple[int, int] = (1, 1)) -> np.ndarray | None:
    """Keep mask (bool, ``w``'s shape) zeroing the lowest-norm ``sparsity`` share of blocks;
    None when nothing would be pruned."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    scores = block_scores(w, block)
    n = scores.size
    k = int(round(sparsity * n))
    if k <= 0 or w.size == 0:
        return None
    flat = scores.reshape(-1)
    keep = np.ones(n, dtype=bool)
    drop = np.argpartition(flat, k - 1)[:k] if k < n else np.arange(n)
    keep[drop] = False
    return expand_block_mask(keep.reshape(scores.shape), w.shape, block)
