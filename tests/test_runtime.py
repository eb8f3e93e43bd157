"""The Python API over the native runtime: Linear/MLP models against numpy,
input checking, file/bytes loading, summary, concurrency."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import sparsert
from conftest import random_sparse

# float32 results against a float64 numpy reference: |err| <= RTOL * max|ref| + ATOL
RTOL = 1e-5
ATOL = 1e-5


def check_close(got: np.ndarray, ref: np.ndarray, rtol: float = RTOL) -> None:
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    err = float(np.abs(got.astype(np.float64) - ref).max(initial=0.0))
    assert err <= rtol * scale + ATOL, f"max abs error {err} (scale {scale})"


def linear_model(w: np.ndarray, b: np.ndarray | None, storage: str, activation: str = "none"):
    g = sparsert.GraphBuilder("linear")
    x = g.input("x", (-1, w.shape[1]))
    ins = [x, g.constant("w", w, storage=storage)]
    if b is not None:
        ins.append(g.constant("b", b))
    y = g.node("Linear", ins, {"activation": activation})
    g.output(y, "y")
    return g


@pytest.mark.parametrize("storage", ["dense", "csr"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
def test_linear_random_shapes(rng, storage, sparsity):
    for _ in range(6):
        m = int(rng.integers(1, 90))
        k = int(rng.integers(1, 90))
        batch = int(rng.choice([1, 2, 3, 7, 16, 17, 64]))
        w = random_sparse(rng, (m, k), sparsity)
        b = rng.standard_normal(m).astype(np.float32) if rng.random() < 0.7 else None
        model = linear_model(w, b, storage).load()
        x = rng.standard_normal((batch, k)).astype(np.float32)
        ref = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b)
        check_close(model.run(x), ref)


def test_linear_empty_rows_and_wide_columns(rng):
    # 70000 columns forces 32-bit column indices; half the rows are empty
    w = random_sparse(rng, (33, 70000), 0.995)
    w[::2] = 0.0
    b = rng.standard_normal(33).astype(np.float32)
    for batch in (1, 5):
        model = linear_model(w, b, "csr").load()
        x = rng.standard_normal((batch, 70000)).astype(np.float32)
        check_close(model.run(x), x.astype(np.float64) @ w.T + b)


@pytest.mark.parametrize("activation", ["relu", "relu6", "sigmoid", "tanh", "hardswish", "silu", "gelu"])
def test_linear_fused_activation(rng, activation):
    import scipy.special

    w = random_sparse(rng, (19, 23), 0.7)
    b = rng.standard_normal(19).astype(np.float32)
    model = linear_model(w, b, "csr", activation).load()
    x = (3 * rng.standard_normal((4, 23))).astype(np.float32)
    z = x.astype(np.float64) @ w.T + b
    ref = {
        "relu": np.maximum(z, 0),
        "relu6": np.clip(z, 0, 6),
        "sigmoid": 1 / (1 + np.exp(-z)),
        "tanh": np.tanh(z),
        "hardswish": z * np.clip(z + 3, 0, 6) / 6,
        "silu": z / (1 + np.exp(-z)),
        "gelu": 0.5 * z * (1 + scipy.special.erf(z / np.sqrt(2))),
    }[activation]
    check_close(model.run(x), ref, rtol=1e-5)


def mlp_builder(rng, sizes, sparsity, storage="auto"):
    g = sparsert.GraphBuilder("mlp")
    x = g.input("x", (-1, sizes[0]))
    weights = []
    h = x
    for i, (k, m) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = random_sparse(rng, (m, k), sparsity)
        b = rng.standard_normal(m).astype(np.float32) * 0.1
        weights.append((w, b))
        last = i == len(sizes) - 2
        h = g.node("Linear", [h, g.constant(f"fc{i}.w", w, storage=storage), g.constant(f"fc{i}.b", b)],
                   {"activation": "none" if last else "relu"}, name=f"fc{i}")
    y = g.node("Softmax", [h], {"axis": -1})
    g.output(y, "probs")
    return g, weights


def mlp_reference(x, weights):
    h = x.astype(np.float64)
    for i, (w, b) in enumerate(weights):
        h = h @ w.T.astype(np.float64) + b
        if i < len(weights) - 1:
            h = np.maximum(h, 0)
    h = np.exp(h - h.max(axis=-1, keepdims=True))
    return h / h.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
def test_mlp_against_numpy(rng, sparsity, tmp_path):
    sizes = [int(rng.integers(5, 300)) for _ in range(4)]
    g, weights = mlp_builder(rng, sizes, sparsity)
    path = g.save(tmp_path / "mlp.spr")
    model = sparsert.load(path, threads=2)
    for batch in (1, 2, 31, 64):
        x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        check_close(model.run(x), mlp_reference(x, weights))
    # the same model from bytes, single-threaded, gives the same answer
    x = rng.standard_normal((9, sizes[0])).astype(np.float32)
    one = sparsert.load_bytes((tmp_path / "mlp.spr").read_bytes(), threads=1).run(x)
    np.testing.assert_allclose(one, model.run(x), rtol=1e-6, atol=1e-7)


def test_storage_auto_picks_csr_only_when_sparse(rng):
    g = sparsert.GraphBuilder()
    x = g.input("x", (1, 64))
    dense_w = g.constant("dense", rng.standard_normal((32, 64)).astype(np.float32), storage="auto")
    sparse_w = g.constant("sparse", random_sparse(rng, (32, 32), 0.9), storage="auto")
    h = g.node("Linear", [x, dense_w])
    y = g.node("Linear", [h, sparse_w])
    g.output(y)
    rows = g.load().summary()
    assert [r["weight_storage"] for r in rows] == ["dense", "csr"]
    assert rows[1]["weight_nnz"] == round(0.1 * 32 * 32)


def test_add_broadcast_flatten_reshape(rng):
    g = sparsert.GraphBuilder()
    x = g.input("x", (-1, 3, 4, 5))
    c = rng.standard_normal((3, 1, 5)).astype(np.float32)
    a = g.node("Add", [x, g.constant("c", c)])
    r = g.node("Relu", [a])
    f = g.node("Flatten", [r], {"axis": 1})
    s = g.node("Reshape", [f], {"shape": [0, 6, -1]})
    g.output(s)
    m = g.load()
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    ref = np.maximum(x + c, 0).reshape(2, 6, 10)
    np.testing.assert_allclose(m.run(x), ref, rtol=1e-6)
    assert m.outputs[0].shape == (-1, 6, 10)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_float_arithmetic_is_bitwise_numpy(rng, op):
    # Long rows (vector bodies and tails of every ISA variant) in each broadcast
    # pattern: both full, a row against a scalar, a scalar against a row, and
    # an inner-dim broadcast; one IEEE operation per element, so bit-equal.
    fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
    for a_shape, b_shape in [((3, 1037), (3, 1037)), ((2, 5, 77), (1,)), ((1,), (4, 333)),
                             ((2, 3, 61), (2, 3, 1)), ((6, 1, 35), (1, 7, 35)), ((1, 9), (9,))]:
        g = sparsert.GraphBuilder()
        g.output(g.node(op, [g.input("a", a_shape), g.input("b", b_shape)]))
        a = rng.standard_normal(a_shape).astype(np.float32)
        b = rng.standard_normal(b_shape).astype(np.float32)
        if op == "Div":
            b[np.abs(b) < 0.1] = 0.5
        got = g.load(threads=2).run([a, b])
        np.testing.assert_array_equal(got, fn(a, b), f"{op} {a_shape} {b_shape}")


def test_two_inputs_two_outputs_by_name(rng):
    g = sparsert.GraphBuilder()
    a = g.input("a", (2, 3))
    b = g.input("b", (2, 3))
    s = g.node("Add", [a, b])
    d = g.node("Mul", [a, b])
    g.output(s, "sum")
    g.output(d, "prod")
    m = g.load()
    x = rng.standard_normal((2, 3)).astype(np.float32)
    y = rng.standard_normal((2, 3)).astype(np.float32)
    out = m.run({"b": y, "a": x}, as_dict=True)
    np.testing.assert_allclose(out["sum"], x + y, rtol=1e-6)
    np.testing.assert_allclose(out["prod"], x * y, rtol=1e-6)
    s2, p2 = m.run([x, y])
    np.testing.assert_allclose(p2, x * y, rtol=1e-6)


def test_bad_inputs_raise_clear_errors(rng):
    m = linear_model(rng.standard_normal((4, 6)).astype(np.float32), None, "dense").load()
    with pytest.raises(ValueError, match=r"input 'x' has dtype float64, expected float32"):
        m.run(np.zeros((1, 6)))
    with pytest.raises(ValueError, match=r"input 'x' has dtype int64"):
        m.run(np.zeros((1, 6), dtype=np.int64))
    with pytest.raises(ValueError, match=r"input 'x' has shape \(1, 5\), expected \(any, 6\)"):
        m.run(np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected \(any, 6\)"):
        m.run(np.zeros((6,), np.float32))
    with pytest.raises(ValueError, match=r"takes 1 input"):
        m.run([np.zeros((1, 6), np.float32)] * 2)
    with pytest.raises(ValueError, match=r"missing input"):
        m.run({"y": np.zeros((1, 6), np.float32)})
    with pytest.raises(ValueError, match="threads"):
        sparsert.load_bytes(b"", threads=-1)


def test_non_contiguous_and_fortran_inputs(rng):
    w = rng.standard_normal((8, 6)).astype(np.float32)
    m = linear_model(w, None, "dense").load()
    base = rng.standard_normal((6, 10)).astype(np.float32)
    for x in (base.T[:, :6] if False else np.asfortranarray(rng.standard_normal((5, 6)).astype(np.float32)),
              rng.standard_normal((10, 12)).astype(np.float32)[::2, ::2]):
        check_close(m.run(x), x.astype(np.float64) @ w.T)


def test_empty_batch_and_nan_propagation(rng):
    w = rng.standard_normal((8, 6)).astype(np.float32)
    m = linear_model(w, None, "dense", "relu").load()
    assert m.run(np.zeros((0, 6), np.float32)).shape == (0, 8)
    x = np.ones((2, 6), np.float32)
    x[0, 0] = np.nan
    y = m.run(x)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        sparsert.load(tmp_path / "nope.spr")
    bad = tmp_path / "bad.spr"
    bad.write_bytes(b"not a model at all, but long enough to have a header......")
    with pytest.raises(sparsert.FormatError, match="magic"):
        sparsert.load(bad)
    assert issubclass(sparsert.FormatError, ValueError)


def test_unsupported_ops_listed_together():
    from sparsert import format as spr

    mf = spr.ModelFile(
        inputs=[spr.ValueInfo("x", (1, 4))],
        outputs=["c"],
        nodes=[
            spr.Node("Frobnicate", ["x"], ["a"], {}, "first"),
            spr.Node("Relu", ["a"], ["b"], {}, "ok"),
            spr.Node("Warp", ["b"], ["c"], {}, "second"),
        ],
        tensors=[],
        metadata={},
    )
    with pytest.raises(sparsert.UnsupportedError) as info:
        sparsert.load_bytes(spr.to_bytes(mf))
    msg = str(info.value)
    assert "Frobnicate (first at node 'first')" in msg and "Warp (first at node 'second')" in msg


def test_summary_and_profile(rng):
    g, _ = mlp_builder(rng, [100, 64, 10], 0.9, storage="auto")
    m = g.load(threads=1)
    x = rng.standard_normal((3, 100)).astype(np.float32)
    m.run(x)
    s = m.summary()
    assert [r["op"] for r in s] == ["Linear", "Linear", "Softmax"]
    assert s[0]["weight_storage"] == "csr" and s[0]["output_shapes"] == [[3, 64]]
    assert s[0]["flops"] == 2 * s[0]["weight_nnz"] * 3
    assert s[0]["dense_flops"] == 2 * 64 * 100 * 3
    assert all(r["time_ms"] is None for r in s)
    total = m.profile(x, repeats=5)
    s = m.summary()
    assert total > 0 and all(r["time_ms"] is not None and r["time_ms"] >= 0 for r in s)
    assert "total" in str(s) and "spmm" in str(s)


def test_concurrent_runs_are_identical(rng):
    g, _ = mlp_builder(rng, [256, 512, 256, 10], 0.8)
    m = g.load(threads=2)
    xs = [rng.standard_normal((int(rng.integers(1, 9)), 256)).astype(np.float32) for _ in range(8)]
    expected = [m.run(x) for x in xs]
    errors: list[str] = []

    def worker(i: int) -> None:
        for r in range(200):
            j = (i + r) % len(xs)
            if not np.array_equal(m.run(xs[j]), expected[j]):
                errors.append(f"thread {i} run {r} differs")
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def test_models_with_different_thread_counts_do_not_interfere(rng):
    g, _ = mlp_builder(rng, [128, 256, 10], 0.9)
    data = g.to_bytes()
    m1 = sparsert.load_bytes(data, threads=1)
    m2 = sparsert.load_bytes(data, threads=2)
    assert (m1.threads, m2.threads) == (1, 2)
    x = rng.standard_normal((4, 128)).astype(np.float32)
    out = {}

    def go(name, model):
        out[name] = [model.run(x) for _ in range(100)]

    ts = [threading.Thread(target=go, args=(n, mm)) for n, mm in (("a", m1), ("b", m2))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for y in out["a"] + out["b"]:
        np.testing.assert_allclose(y, out["a"][0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("tune", [False, True])
def test_per_layer_kernel_choice(rng, tune):
    """Whatever the file stores, a mostly-nonzero weight runs dense and a
    mostly-zero one runs sparse; results are the same either way."""
    mostly_dense = random_sparse(rng, (96, 80), 0.1)
    mostly_zero = random_sparse(rng, (64, 96), 0.97)
    g = sparsert.GraphBuilder()
    x = g.input("x", (-1, 80))
    h = g.node("Linear", [x, g.constant("a", mostly_dense, storage="csr")], {"activation": "relu"})
    y = g.node("Linear", [h, g.constant("b", mostly_zero, storage="dense")])
    g.output(y)
    m = g.load(tune=tune)
    for batch in (1, 8):
        xs = rng.standard_normal((batch, 80)).astype(np.float32)
        ref = np.maximum(xs.astype(np.float64) @ mostly_dense.T, 0) @ mostly_zero.T
        check_close(m.run(xs), ref)
        rows = m.summary([(batch, 80)])
        assert rows[0]["weight_storage"] == "csr" and rows[1]["weight_storage"] == "dense"
        if not tune:
            assert "gemm" in rows[0]["kernel"] and "densified" in rows[0]["kernel"]
            assert "spmm" in rows[1]["kernel"] and "sparse copy" in rows[1]["kernel"]
            assert rows[1]["flops"] == 2 * np.count_nonzero(mostly_zero) * batch


def test_cache_sizes_are_read_at_run_time():
    """The kernels' block sizes come from the cache sizes of the CPU they run on; the report
    says where they came from (defaults only when the system does not say)."""
    c = sparsert.cache_sizes()
    assert set(c) == {"l1d", "l2", "l3", "source"}
    assert c["source"] in ("sysconf", "sysfs", "default")
    assert all(isinstance(c[k], int) and 1024 <= c[k] <= 4 << 30 for k in ("l1d", "l2", "l3"))
    if c["source"] == "default":
        assert (c["l1d"], c["l2"], c["l3"]) == (32 << 10, 1 << 20, 32 << 20)
    import platform

    if platform.system() == "Linux" and os.path.exists("/sys/devices/system/cpu/cpu0/cache/index0/size"):
        assert c["source"] in ("sysconf", "sysfs")  # Linux with sysfs always reports them
