"""Shared fixtures. Every random test draws from a seed that is printed, so a
failure can be replayed with SPARSERT_TEST_SEED=<seed>."""

from __future__ import annotations

import os
import tempfile
import zlib

import numpy as np
import pytest

# load(tune=True) keeps its measured choices in a cache file; tests use their own (one per run, so
# no test sees choices from another run or writes into the user's cache).
_TUNE_CACHE_DIR = tempfile.TemporaryDirectory(prefix="sparsert-tune-")
os.environ["SPARSERT_TUNE_CACHE"] = os.path.join(_TUNE_CACHE_DIR.name, "tune-v1.tsv")


def _base_seed() -> int:
    env = os.environ.get("SPARSERT_TEST_SEED")
    return int(env) if env else 20261125


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    # a stable per-test seed derived from the base seed and the test id
    s = (_base_seed() + zlib.crc32(request.node.nodeid.encode())) % (2**31)
    print(f"seed={s} (base {_base_seed()}; replay with SPARSERT_TEST_SEED={_base_seed()})")
    return s


@pytest.fixture
def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def random_sparse(rng: np.random.Generator, shape: tuple[int, ...], sparsity: float) -> np.ndarray:
    """Random float32 weights with exactly round(sparsity * size) zeros."""
    w = rng.standard_normal(shape).astype(np.float32)
    n = w.size
    k = int(round(sparsity * n))
    if k:
        idx = rng.choice(n, size=k, replace=False)
        w.reshape(-1)[idx] = 0.0
    return w


def child_env() -> dict[str, str]:
    """Environment for a `python -m sparsert ...` child process: it must import
    the same sparsert as this process (the installed package, or an in-tree
    build), never the source folder that `-m` would put first on sys.path when
    run from the repository root."""
    import sparsert

    env = dict(os.environ)
    parent = os.path.dirname(os.path.dirname(os.path.abspath(sparsert.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([parent, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def child_cwd() -> str:
    """A working directory for child processes outside the source tree."""
    import tempfile

    return tempfile.gettempdir()
