"""load(tune=True) keeps its measured kernel choices in a cache file: a second load of the same
layers on the same machine reuses them (the load log says how many), the file is written
atomically with the user's umask, and a damaged or hostile cache file never changes a result
(every choice is between two correct kernels) nor crashes the load."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

import sparsert


def _model(rng: np.random.Generator) -> sparsert.GraphBuilder:
    """Two Linears (one 80% sparse, one 50%) and a 3x3 conv at 70%: every tuned choice kind."""
    b = sparsert.GraphBuilder("tune")
    x = b.input("x", (-1, 8, 12, 12))
    # weights at the scale of a trained net (1 / sqrt(fan-in)), so kernels that sum in other
    # orders agree to float32 rounding (the tolerance below)
    w = (rng.standard_normal((16, 8, 3, 3)) / np.sqrt(72 * 0.3)).astype(np.float32)
    w[rng.random(w.shape) < 0.7] = 0
    h = b.node("Conv", [x, b.constant("wc", w, storage="csr"), ""],
               {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]})
    h = b.node("Flatten", [h], {"axis": 1})
    for i, (rows, sparsity) in enumerate(((64, 0.8), (10, 0.5))):
        cols = 16 * 12 * 12 if i == 0 else 64
        wl = (rng.standard_normal((rows, cols)) / np.sqrt(cols * (1 - sparsity))).astype(np.float32)
        wl[rng.random(wl.shape) < sparsity] = 0
        h = b.node("Linear", [h, b.constant(f"w{i}", wl, storage="csr"), ""])
    b.output(h)
    return b


def _reference(b: sparsert.GraphBuilder, x: np.ndarray) -> np.ndarray:
    return b.load(threads=1).run(x)


def _close(got: np.ndarray, want: np.ndarray) -> None:
    """Sparse, dense, Winograd and im2col kernels sum in different orders: float32 rounding."""
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def _tune_line(m: sparsert.Model) -> str:
    lines = [line for line in m.load_log if line.startswith("tune:")]
    assert lines, m.load_log
    return lines[0]


def _entries(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit("\t", 1)
            out[key] = value
    return out


def test_second_load_reuses_every_choice(tmp_path: Path, rng: np.random.Generator) -> None:
    b = _model(rng)
    cache = tmp_path / "cache" / "tune.tsv"  # the folder is created
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    want = _reference(b, x)
    first = b.load(threads=1, tune=True, tune_cache=cache)
    assert "0 choices reused and 4 timed" in _tune_line(first)  # 2 Linears x (batch 1, batched)
    _close(first.run(x), want)
    entries = _entries(cache)  # the run timed the conv for its input shape, and saved it
    assert sum(" batch " in k for k in entries) == 4
    assert sum("|conv " in k and k.endswith(" sparse") for k in entries) == 1
    assert sum("|conv " in k and k.endswith(" winograd") for k in entries) <= 1  # the dense side's choice
    assert all(v in ("0", "1") for v in entries.values())
    assert all(k.startswith("sparsert " + sparsert.__version__ + "|") for k in entries)
    second = b.load(threads=1, tune=True, tune_cache=cache)
    assert "4 choices reused and 0 timed" in _tune_line(second)
    _close(second.run(x), want)
    assert [r["kernel"] for r in second.summary()] == [r["kernel"] for r in first.summary()]
    assert _entries(cache) == entries  # nothing new to write
    # a different sparsity pattern is a different key: timed, not reused
    other = _model(np.random.default_rng(12345)).load(threads=1, tune=True, tune_cache=cache)
    assert "0 choices reused and 4 timed" in _tune_line(other)


def test_cached_choices_are_used(tmp_path: Path, rng: np.random.Generator) -> None:
    """Flipping every stored choice flips the kernels the next load runs; results stay right."""
    b = _model(rng)
    cache = tmp_path / "tune.tsv"
    x = rng.standard_normal((3, 8, 12, 12)).astype(np.float32)
    want = _reference(b, x)
    m = b.load(threads=1, tune=True, tune_cache=cache)
    m.run(x)
    kernels = [r["kernel"] for r in m.summary()]
    flipped = {k: "1" if v == "0" else "0" for k, v in _entries(cache).items()}
    cache.write_text("".join(f"{k}\t{v}\n" for k, v in flipped.items()))
    m2 = b.load(threads=1, tune=True, tune_cache=cache)
    _close(m2.run(x), want)
    kernels2 = [r["kernel"] for r in m2.summary()]
    conv, lin = 0, [i for i, r in enumerate(m.summary()) if r["op"] == "Linear"]
    assert kernels2[conv] != kernels[conv]
    assert all(kernels2[i] != kernels[i] for i in lin), (kernels, kernels2)


def test_cache_file_honours_the_umask_and_replaces_atomically(tmp_path: Path,
                                                              rng: np.random.Generator) -> None:
    cache = tmp_path / "tune.tsv"
    old = os.umask(0o027)
    try:
        _model(rng).load(threads=1, tune=True, tune_cache=cache)
    finally:
        os.umask(old)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["tune.tsv"]  # no temporary file left behind


@pytest.mark.parametrize("content", [
    b"",
    b"\x00\xff\xfe garbage \n\n\t\t\n",
    b"key-without-choice\nkey\t2\nkey\t\n\t1\n" + b"x" * 5000 + b"\t1\n",
    b"# header only\n",
])
def test_hostile_cache_files_cost_a_retiming_only(tmp_path: Path, rng: np.random.Generator,
                                                  content: bytes) -> None:
    b = _model(rng)
    cache = tmp_path / "tune.tsv"
    cache.write_bytes(content)
    x = rng.standard_normal((1, 8, 12, 12)).astype(np.float32)
    m = b.load(threads=1, tune=True, tune_cache=cache)
    assert "0 choices reused and 4 timed" in _tune_line(m)
    _close(m.run(x), _reference(b, x))
    fresh = tmp_path / "fresh.tsv"
    b.load(threads=1, tune=True, tune_cache=fresh).run(x)
    # rewritten with the good entries only (the choices themselves are timings: they may differ)
    assert set(_entries(cache)) == set(_entries(fresh))


def test_oversized_cache_file_is_ignored(tmp_path: Path, rng: np.random.Generator) -> None:
    cache = tmp_path / "tune.tsv"
    with open(cache, "wb") as f:
        f.truncate(9 << 20)  # over the 8 MiB the reader accepts (sparse file: no disk used)
    m = _model(rng).load(threads=1, tune=True, tune_cache=cache)
    assert "0 choices reused and 4 timed" in _tune_line(m)
    assert cache.stat().st_size < 1 << 20


def test_unwritable_cache_is_reported_not_raised(tmp_path: Path, rng: np.random.Generator) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    m = _model(rng).load(threads=1, tune=True, tune_cache=blocker / "tune.tsv")
    assert any("cache not saved" in line for line in m.load_log), m.load_log
    assert m.run(np.ones((1, 8, 12, 12), np.float32)).shape == (1, 10)


def test_no_cache_when_off_or_without_tune(tmp_path: Path, rng: np.random.Generator) -> None:
    cache = tmp_path / "tune.tsv"
    b = _model(rng)
    m = b.load(threads=1, tune=True, tune_cache=False)
    assert not any(line.startswith("tune:") for line in m.load_log)
    b.load(threads=1, tune_cache=cache).run(np.ones((1, 8, 12, 12), np.float32))  # tune off: no file
    assert not cache.exists()
    with pytest.raises(ValueError, match="tune_cache"):
        b.load(tune=True, tune_cache=3)


def test_default_location_follows_the_environment(tmp_path: Path, rng: np.random.Generator,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPARSERT_TUNE_CACHE")
    monkeypatch.delenv("SPARSERT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    m = _model(rng).load(threads=1, tune=True)
    assert (tmp_path / "xdg" / "sparsert" / "tune-v1.tsv").is_file()
    assert str(tmp_path / "xdg") in _tune_line(m)
    monkeypatch.setenv("SPARSERT_CACHE_DIR", str(tmp_path / "shared"))  # the latency tables' folder
    _model(rng).load(threads=1, tune=True)
    assert (tmp_path / "shared" / "tune-v1.tsv").is_file()


def test_cached_sparse_choices_build_no_dense_copies(tmp_path: Path) -> None:
    """Timing needs both representations; a cached choice builds only the one it names. Five
    1-nonzero 4096 x 4096 weights (64 MiB dense each): the first load's dense copies for timing
    exhaust the 256 MiB expand budget (the log says so); the second load copies only the one
    layer the first could not time."""
    b = sparsert.GraphBuilder("copies")
    h = b.input("x", (1, 4096))
    for i in range(5):
        indptr = np.zeros(4097, np.int64)
        indptr[1:] = 1
        w = sparsert.format.Tensor.csr(f"w{i}", (4096, 4096), indptr, np.array([i], np.int64),
                                       np.ones(1, np.float32))
        h = b.node("Linear", [h, b.constant(f"w{i}", w), ""])
    b.output(h)
    cache = tmp_path / "tune.tsv"
    first = b.load(threads=1, tune=True, tune_cache=cache)
    assert any("expand budget" in line for line in first.load_log), first.load_log
    second = b.load(threads=1, tune=True, tune_cache=cache)
    assert not any("expand budget" in line for line in second.load_log), second.load_log
    # the fifth layer's dense copy was refused in the first load, so it was not timed then
    assert "8 choices reused and 2 timed" in _tune_line(second)
    x = np.random.default_rng(0).standard_normal((1, 4096)).astype(np.float32)
    want = b.load(threads=1).run(x)
    for m in (first, second):
        np.testing.assert_array_equal(m.run(x), want)
