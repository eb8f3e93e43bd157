"""pytest-benchmark configuration for the sparsert benchmark suite.

Run it (see docs/benchmarks.md)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python -m pytest benchmarks/ --benchmark-enable --benchmark-json=run.json
    python -m benchmarks.report run.json

Options: ``--sparsert-quick`` (or ``SPARSERT_BENCH_QUICK=1``) runs tiny shapes once each, to check
the harness, not to time anything; ``--sparsert-models``, ``--sparsert-batch`` and
``--sparsert-threads`` pick a subset of the model-level matrix. The suite never changes
``OPENBLAS_*`` variables; it records them, with the BLAS thread pools, in the JSON machine info.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sparsert benchmarks")
    group.addoption(
        "--sparsert-quick",
        action="store_true",
        default=False,
        help="tiny shapes, one round each: checks the harness (also SPARSERT_BENCH_QUICK=1)",
    )
    group.addoption(
        "--sparsert-models",
        default="",
        help="comma-separated model names for the model-level benchmarks (default: all)",
    )
    group.addoption(
        "--sparsert-batch",
        default="",
        help="comma-separated batch sizes for the model-level benchmarks (default: 1,8)",
    )
    group.addoption(
        "--sparsert-threads",
        default="",
        help="comma-separated thread counts for the model-level benchmarks (default: 1,2)",
    )


def is_quick(config: pytest.Config) -> bool:
    env = os.environ.get("SPARSERT_BENCH_QUICK", "").strip().lower()
    return bool(config.getoption("sparsert_quick")) or env not in ("", "0", "false", "no")


def int_list(config: pytest.Config, option: str, default: list[int]) -> list[int]:
    text = str(config.getoption(option)).strip()
    if not text:
        return default
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        flag = "--" + option.replace("_", "-")
        raise pytest.UsageError(f"{flag} takes comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise pytest.UsageError(f"--{option.replace('_', '-')} takes positive integers, got {text!r}")
    return values


@pytest.fixture
def quick(request: pytest.FixtureRequest) -> bool:
    return is_quick(request.config)


@pytest.fixture
def measure(benchmark: Any, quick: bool) -> Callable[..., Any]:
    """``measure(fn)`` times ``fn``: calibrated rounds normally, a single round in quick mode."""

    def run(fn: Callable[[], Any]) -> Any:
        if quick:
            return benchmark.pedantic(fn, rounds=1, iterations=1, warmup_rounds=0)
        return benchmark(fn)

    return run


def blas_info() -> list[dict[str, Any]]:
    try:
        import threadpoolctl
    except ImportError:
        return []
    return [dict(pool) for pool in threadpoolctl.threadpool_info()]


def _versions() -> dict[str, str]:
    import importlib

    out = {}
    for name in ("numpy", "scipy", "torch", "onnxruntime", "onnx"):
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            out[name] = "not installed"
    return out


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    import sparsert

    machine_info["sparsert"] = {
        "version": sparsert.__version__,
        "cpu_features": sparsert.cpu_features(),
        "cache_sizes": sparsert.cache_sizes(),
        "isa_cap": os.environ.get("SPARSERT_ISA", ""),
    }
    machine_info["platform_machine"] = platform.machine()
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["libraries"] = _versions()
    machine_info["threadpoolctl"] = blas_info() or "threadpoolctl not installed"
    machine_info["openblas_env"] = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    machine_info["benchmark_mode"] = "quick" if is_quick(config) else "full"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("model name", "hardware", "cpu part", "revision") and ":" in line:
                    machine_info.setdefault("proc_cpuinfo", {})[key] = line.split(":", 1)[1].strip()
    except OSError:
        pass
