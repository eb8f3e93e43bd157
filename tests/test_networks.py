"""Whole networks: ResNet-18-style and MobileNetV2-style (plus the V3-style
variant), all at 224x224, converted with tests/models.py and run by sparsert
against PyTorch.

Random weights, eval mode with random BatchNorm statistics; magnitude-pruned
to 90% (first conv and depthwise convs kept dense, weights stored as CSR by
storage="auto") and dense (0%). The reference is the same module in float64;
the check is max|sparsert - ref| / max|ref| < 1e-4 (printed with the
timings: 1 thread, batch 1, median of a few runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest
import torch
from models import build_spr, magnitude_prune_, mobilenet_v2_torch, randomize_batchnorm_, resnet18_torch

import sparsert

MAX_REL_ERROR = 1e-4


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (plans, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def make_network(kind: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "resnet18":
        net = resnet18_torch()
    elif kind == "mobilenet_v2":
        net = mobilenet_v2_torch()
    else:
        net = mobilenet_v2_torch(v3_style=True)
    return randomize_batchnorm_(net, torch.Generator().manual_seed(seed + 1))


@pytest.mark.parametrize("sparsity", [0.9, 0.0])
@pytest.mark.parametrize("kind", ["resnet18", "mobilenet_v2", "mobilenet_v3_style"])
def test_network_matches_torch(seed, kind, sparsity):
    net = make_network(kind, seed)
    magnitude_prune_(net, sparsity, skip_first=True, skip_depthwise=True)
    size = 224
    model = sparsert.load_bytes(build_spr(net, (-1, 3, size, size), storage="auto"), threads=1)

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        ref = net.double()(torch.from_numpy(x).double()).numpy()
    got = model.run(x)
    assert got.shape == ref.shape == (2, 1000)
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())

    # the pruned weights really are stored sparse (and the dense ones dense)
    rows = model.summary([(1, 3, size, size)])
    storages = {str(r.get("weight_storage")) for r in rows if r.get("op") in ("Conv", "Linear")}
    assert ("csr" in storages) == (sparsity >= 0.5), storages

    # timing: 1 thread, batch 1
    x1 = x[:1]
    net_f32 = net.float()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            t_torch = median_ms(lambda: net_f32(torch.from_numpy(x1)), 3)
    finally:
        torch.set_num_threads(threads)
    t_spr = median_ms(lambda: model.run(x1), 3)
    print(
        f"{kind} {size}x{size} sparsity {sparsity:.0%}: max rel error {rel:.2e}; "
        f"1 thread batch 1: sparsert {t_spr:.1f} ms, torch {t_torch:.1f} ms"
    )
    assert rel < MAX_REL_ERROR, f"max relative error {rel:.3e}"


def test_magnitude_prune_keeps_first_and_depthwise_dense():
    net = mobilenet_v2_torch(num_classes=10, width_mult=0.5)
    magnitude_prune_(net, 0.9)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert float((convs[0].weight == 0).float().mean()) < 0.5
    for m in convs[1:]:
        zeros = float((m.weight == 0).float().mean())
        if m.groups == m.in_channels and m.groups > 1:
            assert zeros < 0.5
        else:
            assert abs(zeros - 0.9) < 0.01, (m, zeros)
    fc = net.classifier.weight
    assert abs(float((fc == 0).float().mean()) - 0.9) < 0.01
    with pytest.raises(ValueError):
        magnitude_prune_(net, 1.5)


def test_build_spr_refuses_training_mode_and_unknown_modules():
    net = resnet18_torch(num_classes=10)
    with pytest.raises(ValueError, match="eval mode"):
        build_spr(net.train(), (1, 3, 32, 32))
    with pytest.raises(TypeError, match="ResNet18 and MobileNetV2"):
        build_spr(torch.nn.Linear(3, 4).eval(), (1, 3))


@pytest.mark.parametrize("kind", ["resnet18", "mobilenet_v2"])
def test_small_networks_full_sparsity_range(seed, kind):
    # small inputs, odd size, every sparsity level incl. 1.0 (all-zero layers: output = folded biases)
    for sparsity in (0.5, 0.95, 1.0):
        torch.manual_seed(seed)
        net = resnet18_torch(num_classes=10) if kind == "resnet18" else mobilenet_v2_torch(10, width_mult=0.5)
        randomize_batchnorm_(net, torch.Generator().manual_seed(seed))
        magnitude_prune_(net, sparsity)
        model = sparsert.load_bytes(build_spr(net, (-1, 3, 45, 37)))
        x = np.random.default_rng(seed).standard_normal((3, 3, 45, 37)).astype(np.float32)
        with torch.no_grad():
            ref = net.double()(torch.from_numpy(x).double()).numpy()
        got = model.run(x)
        rel = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))
        print(f"{kind} 45x37 sparsity {sparsity:.0%}: max rel error {rel:.2e}")
        assert rel < MAX_REL_ERROR
