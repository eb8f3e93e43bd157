"""Layer level: ``Y = W·X`` with W ``M x K`` pruned to a given sparsity, X ``K x N``, one thread.

sparsert runs a one-layer ``.spr`` model: a Linear on ``[N, K]`` for the token shapes (N = 1 and
128) and a 1x1 Conv2d on ``[1, K, √N, √N]`` for the spatial ones (N = 3136 = 56² and 196 = 14²),
with ``storage="auto"`` (CSR at >= 50% zeros, packed dense GEMM below). Peers: numpy dense
(``W @ X``), scipy CSR, PyTorch dense and ``torch.sparse`` CSR; each library runs in its own natural
layout. Dense peers do not look at the values, so they are timed once per shape ("dense").

Every benchmark records in ``extra_info``: library, M, K, N, sparsity, nnz, useful FLOPs
(2·nnz·N), effective dense FLOPs (2·M·K·N), storage and threads; ``report.py`` derives GFLOP/s and
speedups from those and the median time.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import sparsert
from benchmarks.conftest import is_quick

# (M, K, N, how sparsert runs it)
LAYER_SHAPES = [
    (768, 768, 1, "linear"),
    (3072, 768, 1, "linear"),
    (768, 768, 128, "linear"),
    (3072, 768, 128, "linear"),
    (256, 256, 3136, "conv1x1"),
    (512, 4608, 196, "conv1x1"),
]
SPARSITIES = [0.0, 0.5, 0.7, 0.8, 0.9, 0.95]
QUICK_SHAPES = [(16, 32, 1, "linear"), (24, 16, 9, "conv1x1"), (8, 40, 5, "linear")]
QUICK_SPARSITIES = [0.0, 0.9]

SPARSE_LIBRARIES = ["sparsert", "scipy_csr", "torch_sparse_csr"]
DENSE_LIBRARIES = ["numpy", "torch"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    quick = is_quick(metafunc.config)
    shapes = QUICK_SHAPES if quick else LAYER_SHAPES
    sparsities = QUICK_SPARSITIES if quick else SPARSITIES
    if metafunc.function.__name__ == "bench_layer_sparse":
        params = [(s, sp, lib) for s in shapes for sp in sparsities for lib in SPARSE_LIBRARIES]
        ids = [f"{m}x{k}x{n}-s{round(sp * 100)}-{lib}" for (m, k, n, _), sp, lib in params]
        metafunc.parametrize("shape,sparsity,library", params, ids=ids)
    elif metafunc.function.__name__ == "bench_layer_dense":
        params = [(s, lib) for s in shapes for lib in DENSE_LIBRARIES]
        ids = [f"{m}x{k}x{n}-dense-{lib}" for (m, k, n, _), lib in params]
        metafunc.parametrize("shape,library", params, ids=ids)


def pruned_weight(m: int, k: int, sparsity: float, seed: int) -> np.ndarray:
    """Random normal weights with exactly round(sparsity·M·K) zeros at random places."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, k)).astype(np.float32)
    zeros = int(round(sparsity * w.size))
    if zeros:
        w.reshape(-1)[rng.choice(w.size, size=zeros, replace=False)] = 0.0
    return w


def activations(k: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 1).standard_normal((k, n)).astype(np.float32)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[str]:
    """numpy's BLAS limited to one thread when threadpoolctl is installed (the suite never sets
    OPENBLAS_* variables); yields what was done, for extra_info."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield "uncontrolled (threadpoolctl not installed)"
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield "1"


def sparsert_layer(w: np.ndarray, n: int, how: str) -> tuple[Any, np.ndarray, Any]:
    """A one-layer model computing W·X; returns (model, its input, output -> M x N converter)."""
    m, k = w.shape
    b = sparsert.GraphBuilder("layer")
    if how == "linear":
        x = b.input("x", (-1, k))
        y = b.node("Linear", [x, b.constant("w", w, storage="auto")])
        model_input_shape: tuple[int, ...] = (n, k)

        def to_mn(out: np.ndarray) -> np.ndarray:
            return out.T

    else:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"conv1x1 layer shapes need a square N, got {n}")
        x = b.input("x", (-1, k, side, side))
        y = b.node("Conv", [x, b.constant("w", w.reshape(m, k, 1, 1), storage="auto")])
        model_input_shape = (1, k, side, side)

        def to_mn(out: np.ndarray) -> np.ndarray:
            return out.reshape(m, n)

    b.output(y, "y")
    model = b.load(threads=1)
    return model, np.zeros(model_input_shape, np.float32), to_mn


def _check(name: str, got: np.ndarray, want: np.ndarray) -> None:
    scale = max(float(np.abs(want).max()), 1e-6)
    err = float(np.abs(np.asarray(got, dtype=np.float64) - want).max()) / scale
    assert err < 1e-4, f"{name}: result differs from float64 W·X by {err:.2e} (relative to max |y|)"


def _info(
    benchmark: Any,
    library: str,
    shape: tuple[int, int, int, str],
    sparsity: float | None,
    nnz: int,
    storage: str,
    blas: str = "",
) -> None:
    m, k, n, _ = shape
    benchmark.group = f"layer {m}x{k}x{n}"
    benchmark.extra_info.update(
        {
            "kind": "layer",
            "library": library,
            "M": m,
            "K": k,
            "N": n,
            "sparsity": sparsity,
            "nnz": nnz,
            "useful_flop": 2 * nnz * n,
            "dense_flop": 2 * m * k * n,
            "storage": storage,
            "threads": 1,
            "blas_threads": blas,
        }
    )


def bench_layer_sparse(
    benchmark: Any, measure: Any, shape: tuple[int, int, int, str], sparsity: float, library: str
) -> None:
    m, k, n, how = shape
    w = pruned_weight(m, k, sparsity, seed=m * 7 + k * 3 + n)
    x = activations(k, n, seed=m + k + n)
    want = w.astype(np.float64) @ x.astype(np.float64)
    nnz = int(np.count_nonzero(w))

    if library == "sparsert":
        model, model_input, to_mn = sparsert_layer(w, n, how)
        model_input[...] = x.T if how == "linear" else x.reshape(model_input.shape)
        _check("sparsert", to_mn(model.run(model_input)), want)
        storage = model.summary()[0]["weight_storage"]
        _info(benchmark, library, shape, sparsity, nnz, f"{storage} ({how})")
        measure(lambda: model.run(model_input))
    elif library == "scipy_csr":
        try:
            import scipy.sparse
        except ImportError:
            pytest.skip("scipy is not installed: the scipy CSR peer is skipped")
        csr = scipy.sparse.csr_matrix(w)
        _check("scipy", csr @ x, want)
        _info(benchmark, library, shape, sparsity, nnz, "csr")
        measure(lambda: csr @ x)
    elif library == "torch_sparse_csr":
        torch = _torch()
        wt = torch.from_numpy(w).to_sparse_csr()
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            _check("torch.sparse", (wt @ xt).numpy(), want)
            _info(benchmark, library, shape, sparsity, nnz, "csr")
            measure(lambda: wt @ xt)
    else:  # pragma: no cover
        raise ValueError(library)


def bench_layer_dense(benchmark: Any, measure: Any, shape: tuple[int, int, int, str], library: str) -> None:
    m, k, n, _ = shape
    w = pruned_weight(m, k, 0.0, seed=m * 7 + k * 3 + n)
    x = activations(k, n, seed=m + k + n)
    want = w.astype(np.float64) @ x.astype(np.float64)
    if library == "numpy":
        with one_blas_thread() as blas:
            _check("numpy", w @ x, want)
            _info(benchmark, library, shape, None, w.size, "dense", blas)
            measure(lambda: w @ x)
    elif library == "torch":
        torch = _torch()
        wt, xt = torch.from_numpy(w), torch.from_numpy(x)
        with torch.inference_mode():
            _check("torch", (wt @ xt).numpy(), want)
            _info(benchmark, library, shape, None, w.size, "dense")
            measure(lambda: wt @ xt)
    else:  # pragma: no cover
        raise ValueError(library)


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        pytest.skip("PyTorch is not installed: the PyTorch peers are skipped")
    torch.set_num_threads(1)
    return torch
