"""Accuracy recovery on scikit-learn's 8x8 digits: prune + fine-tune must stay near the dense CNN."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from test_prune_models import seed_everything
from torch import nn

import sparsert.prune as sp

sklearn_datasets = pytest.importorskip("sklearn.datasets")


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    digits = sklearn_datasets.load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    split = int(0.8 * len(y))
    return x[:split], y[:split], x[split:], y[split:]


def _loader(x: torch.Tensor, y: torch.Tensor, batch: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    order = torch.randperm(len(y))
    return [(x[order[i : i + batch]], y[order[i : i + batch]]) for i in range(0, len(y), batch)]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return 100.0 * float((model(x).argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, tuple[torch.Tensor, ...], float]:
    seed_everything("digits")
    data = _data()
    model = DigitsCNN()
    sp.fine_tune(model, _loader(data[0], data[1]), F.cross_entropy, epochs=12, lr=3e-3, progress=False)
    dense = _accuracy(model, data[2], data[3])
    print(f"dense test accuracy: {dense:.2f}%")
    assert dense > 90.0
    return model, data, dense


def test_unstructured_90_percent_recovers(trained: tuple[nn.Module, tuple[torch.Tensor, ...], float]) -> None:
    dense_model, (x_train, y_train, x_test, y_test), dense = trained
    model = copy.deepcopy(dense_model)
    calls = []

    def fine_tune_fn(m: nn.Module, step: int) -> None:
        calls.append(step)
        sp.fine_tune(m, _loader(x_train, y_train), F.cross_entropy, epochs=2, lr=1e-3, progress=False)

    schedule = sp.CubicSchedule(0.0, 0.9, steps=4)
    results = sp.iterative_prune(
        model, schedule, fine_tune_fn, method="magnitude", scope="global", progress=False
    )
    assert calls == [1, 2, 3, 4]
    assert results[-1].sparsity == pytest.approx(0.9, abs=1e-3)
    pruned = _accuracy(model, x_test, y_test)
    print(
        f"unstructured 90%: dense {dense:.2f}% -> pruned {pruned:.2f}% (sparsity {results[-1].sparsity:.3f})"
    )
    assert pruned >= dense - 2.0
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    zeros = sum(int((m.weight == 0).sum()) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert zeros / weights == pytest.approx(0.9, abs=1e-3)


def test_structured_50_percent_recovers(trained: tuple[nn.Module, tuple[torch.Tensor, ...], float]) -> None:
    dense_model, (x_train, y_train, x_test, y_test), dense = trained
    model = copy.deepcopy(dense_model)
    example = x_test[:2]

    def fine_tune_fn(m: nn.Module, step: int) -> None:
        sp.fine_tune(m, _loader(x_train, y_train), F.cross_entropy, epochs=2, lr=1e-3, progress=False)

    schedule = sp.LinearSchedule(0.0, 0.5, steps=2)
    sp.iterative_prune(model, schedule, fine_tune_fn, method="l1", example_input=example, progress=False)
    info = sp.pruning_info(model)
    for name in ("conv1", "conv2", "conv3", "fc1"):
        out = {"conv1": 16, "conv2": 32, "conv3": 32, "fc1": 64}[name]
        assert info[name]["kind"] == "structured"
        assert len(info[name]["removed_out_channels"]) == out // 2
    pruned = _accuracy(model, x_test, y_test)
    small = sp.shrink(model, example)
    shrunk = _accuracy(small, x_test, y_test)
    print(f"structured 50%: dense {dense:.2f}% -> pruned {pruned:.2f}% (shrunk copy {shrunk:.2f}%)")
    assert small.conv2.weight.shape == (16, 8, 3, 3)
    assert small.fc1.weight.shape == (32, 16 * 16)
    assert pruned >= dense - 3.0
    assert shrunk == pytest.approx(pruned, abs=1e-9)
