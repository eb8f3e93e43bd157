"""Model level: whole networks, batch 1 and 8, 1 and 2 threads.

Models (``benchmarks/models.py``): ResNet-18 and MobileNetV2 at 224x224, a 2-layer BERT-base
encoder at sequence length 128, and an MLP 1024-2048-2048-1000. Variants: unstructured
magnitude pruning to 0, 50, 80, 90 and 95% (``u0`` ... ``u95``) and 50% structured (``s50``:
the inner widths halved, as ``sparsert.prune`` + ``shrink`` would leave it). sparsert runs each
variant; onnxruntime and PyTorch run the dense model: they treat zeros as ordinary numbers, so
their time does not depend on the variant, and the report compares every variant with it.

Thread counts are set per library: ``sparsert.load_bytes(threads=)``, onnxruntime
``intra_op_num_threads``, ``torch.set_num_threads``. The sparsert model-level benchmarks need only
numpy; a peer that is not installed is skipped with a message saying so.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

import sparsert
from benchmarks import models
from benchmarks.conftest import int_list, is_quick

VARIANTS = {
    "u0": (0.0, 1.0),
    "u50": (0.5, 1.0),
    "u80": (0.8, 1.0),
    "u90": (0.9, 1.0),
    "u95": (0.95, 1.0),
    "s50": (0.0, 0.5),
}  # name -> (unstructured sparsity, kept inner width)
QUICK_VARIANTS = ["u0", "u90", "s50"]
PEERS = ["onnxruntime", "torch"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.function.__name__ != "bench_model":
        return
    config = metafunc.config
    quick = is_quick(config)
    names = [n.strip() for n in str(config.getoption("sparsert_models")).split(",") if n.strip()]
    unknown = sorted(set(names) - set(models.MODEL_NAMES))
    if unknown:
        raise pytest.UsageError(
            f"--sparsert-models: unknown model(s) {unknown}; choose from {models.MODEL_NAMES}"
        )
    names = names or list(models.MODEL_NAMES)
    batches = int_list(config, "sparsert_batch", [1, 2] if quick else [1, 8])
    threads = int_list(config, "sparsert_threads", [1] if quick else [1, 2])
    variants = QUICK_VARIANTS if quick else list(VARIANTS)
    params, ids = [], []
    for name in names:
        for batch in batches:
            for t in threads:
                # dense first so that the cached dense model serves sparsert u0 and both peers
                runs = [("sparsert", "u0")] + [(p, "dense") for p in PEERS]
                runs += [("sparsert", v) for v in variants if v != "u0"]
                for library, variant in runs:
                    params.append((name, batch, t, library, variant))
                    ids.append(f"{name}-b{batch}-t{t}-{library}-{variant}")
    metafunc.parametrize("name,batch,threads,library,variant", params, ids=ids)


def pruned_net(name: str, variant: str, quick: bool) -> models.Net:
    return _pruned_net(name, "u0" if variant == "dense" else variant, quick)


def spr_bytes(name: str, variant: str, quick: bool) -> bytes:
    return _spr_bytes(name, "u0" if variant == "dense" else variant, quick)


@functools.lru_cache(maxsize=2)
def _pruned_net(name: str, variant: str, quick: bool) -> models.Net:
    sparsity, inner = VARIANTS[variant]
    return models.magnitude_prune(models.build(name, quick, inner), sparsity)


@functools.lru_cache(maxsize=2)
def _spr_bytes(name: str, variant: str, quick: bool) -> bytes:
    return models.to_spr(pruned_net(name, variant, quick))


def model_input(net: models.Net, batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, *net.input_shape)).astype(np.float32)


def bench_model(
    benchmark: Any, measure: Any, quick: bool, name: str, batch: int, threads: int, library: str, variant: str
) -> None:
    net = pruned_net(name, variant, quick)
    x = model_input(net, batch)
    benchmark.group = f"model {name} batch {batch} threads {threads}"
    info: dict[str, Any] = {
        "kind": "model",
        "library": library,
        "model": name,
        "batch": batch,
        "threads": threads,
        "variant": variant,
        "sparsity": round(net.weight_sparsity(), 4),
        "structured": VARIANTS.get(variant, (0.0, 1.0))[1] < 1.0,
    }
    if library == "sparsert":
        model = sparsert.load_bytes(spr_bytes(name, variant, quick), threads=threads)
        model.run(x)
        totals = model.summary().totals()
        info.update(
            {
                "flop": int(totals["flops"]),
                "dense_flop": int(totals["dense_flops"]),
                "weight_bytes": int(totals["weight_bytes"]),
                "weight_nnz": int(totals["weight_nnz"]),
            }
        )
        benchmark.extra_info.update(info)
        measure(lambda: model.run(x))
        return

    reference = sparsert.load_bytes(spr_bytes(name, "u0", quick), threads=threads).run(x)
    if library == "onnxruntime":
        try:
            import onnxruntime as ort
        except ImportError:
            pytest.skip("onnxruntime is not installed: the onnxruntime peer is skipped")
        try:
            onnx_model = models.to_onnx(net)
        except ImportError:
            pytest.skip("the onnx package is not installed (it builds the onnxruntime peer's model): skipped")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
        feed = {net.input_name: x}

        def run() -> Any:
            return session.run(None, feed)[0]

        _check("onnxruntime", run(), reference)
        benchmark.extra_info.update(info)
        measure(run)
    elif library == "torch":
        try:
            import torch
        except ImportError:
            pytest.skip("PyTorch is not installed: the PyTorch peer is skipped")
        torch.set_num_threads(threads)
        module = models.to_torch(net)
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            _check("torch", module(xt).numpy(), reference)
            benchmark.extra_info.update(info)
            measure(lambda: module(xt))
    else:  # pragma: no cover
        raise ValueError(library)


def _check(name: str, got: np.ndarray, want: np.ndarray) -> None:
    """The peer must compute what sparsert computes on the same dense weights."""
    assert got.shape == want.shape, f"{name}: output shape {got.shape}, sparsert gives {want.shape}"
    scale = max(float(np.abs(want).max()), 1e-6)
    err = float(np.abs(got - want).max()) / scale
    assert err < 1e-3, f"{name}: output differs from sparsert's by {err:.2e} (relative to max |y|)"
