"""Small models shared by the pruning tests (MLP, CNN, residual, inverted residual, concat, flatten).

The file also checks that every model traces and runs, so it is a valid test module of its own.
"""

from __future__ import annotations

import os
import random

import torch
import torch.nn.functional as F
from torch import nn


def seed_everything(name: str) -> int:
    """Seeds torch/random from SPARSERT_TEST_SEED (or a fixed default) and prints the seed."""
    seed = int(os.environ.get("SPARSERT_TEST_SEED", "1234"))
    print(f"[{name}] seed={seed}")
    torch.manual_seed(seed)
    random.seed(seed)
    # One thread: for these tiny layers a second thread only adds overhead, and on a loaded 2-core
    # machine OpenMP spinning made 2 threads ~40x slower (13.8 s vs 0.32 s for two digits epochs).
    torch.set_num_threads(1)
    return seed


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(13, 32)
        self.fc2 = nn.Linear(32, 24)
        self.fc3 = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(F.relu(self.fc1(x)))))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(12)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(torch.flatten(self.pool(x), 1))


class ResidualNet(nn.Module):
    """stem -> two residual blocks (identity shortcuts) -> projection block -> classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.b1_conv1 = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.b1_bn1 = nn.BatchNorm2d(6)
        self.b1_conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.b1_bn2 = nn.BatchNorm2d(8)
        self.b2_conv1 = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.b2_bn1 = nn.BatchNorm2d(6)
        self.b2_conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.b2_bn2 = nn.BatchNorm2d(8)
        self.b3_conv1 = nn.Conv2d(8, 10, 3, stride=2, padding=1, bias=False)
        self.b3_bn1 = nn.BatchNorm2d(10)
        self.b3_conv2 = nn.Conv2d(10, 10, 3, padding=1, bias=False)
        self.b3_bn2 = nn.BatchNorm2d(10)
        self.b3_proj = nn.Conv2d(8, 10, 1, stride=2, bias=False)
        self.b3_proj_bn = nn.BatchNorm2d(10)
        self.fc = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        y = F.relu(self.b1_bn1(self.b1_conv1(x)))
        x = F.relu(self.b1_bn2(self.b1_conv2(y)) + x)
        y = F.relu(self.b2_bn1(self.b2_conv1(x)))
        x = F.relu(self.b2_bn2(self.b2_conv2(y)) + x)
        y = F.relu(self.b3_bn1(self.b3_conv1(x)))
        x = F.relu(self.b3_bn2(self.b3_conv2(y)) + self.b3_proj_bn(self.b3_proj(x)))
        return self.fc(x.mean(dim=(2, 3)))


class InvertedResidual(nn.Module):
    def __init__(self, channels: int, expand: int) -> None:
        super().__init__()
        hidden = channels * expand
        self.expand = nn.Conv2d(channels, hidden, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.expand_bn(self.expand(x)))
        y = F.relu6(self.depthwise_bn(self.depthwise(y)))
        return x + self.project_bn(self.project(y))


class MobileNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.block1 = InvertedResidual(8, 3)
        self.block2 = InvertedResidual(8, 2)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.stem_bn(self.stem(x)))
        x = self.block2(self.block1(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class ConcatNet(nn.Module):
    """Two branches concatenated on channels (offsets 0 and 6), then a 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.branch_a = nn.Conv2d(3, 6, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(6)
        self.branch_b = nn.Conv2d(3, 10, 1)
        self.merge = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn_a(self.branch_a(x)))
        b = torch.sigmoid(self.branch_b(x))
        y = F.relu(self.merge(torch.cat([a, b], dim=1)))
        return self.fc(y.mean(dim=[2, 3]))


class FlattenNet(nn.Module):
    """Conv -> flatten -> Linear: every conv channel is a block of H*W Linear inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(6, 5, 3)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(5 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc2(F.relu(self.fc1(self.flatten(x))))


class ViewNet(nn.Module):
    """Like FlattenNet but flattening with x.view(x.size(0), -1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 5 * 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


class UnknownOpNet(nn.Module):
    """conv_a's channels go through torch.roll along channels (not understood); conv_c is fine."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 6, 3, padding=1)
        self.conv_b = nn.Conv2d(6, 6, 3, padding=1)
        self.conv_c = nn.Conv2d(6, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.roll(F.relu(self.conv_a(x)), 1, dims=1)
        x = F.relu(self.conv_c(F.relu(self.conv_b(x))))
        return self.fc(x.mean(dim=(2, 3)))


def all_models() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """name -> (model in eval mode with randomized BN statistics, example input)."""
    models = {
        "mlp": (MLP(), torch.randn(4, 13)),
        "cnn": (SmallCNN(), torch.randn(2, 3, 8, 8)),
        "resnet": (ResidualNet(), torch.randn(2, 3, 8, 8)),
        "mobilenet": (MobileNetLike(), torch.randn(2, 3, 8, 8)),
        "concat": (ConcatNet(), torch.randn(2, 3, 6, 6)),
        "flatten": (FlattenNet(), torch.randn(3, 1, 8, 8)),
    }
    for model, _ in models.values():
        randomize_batchnorm(model)
        model.eval()
    return models


def randomize_batchnorm(model: nn.Module) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)


def test_models_trace_and_run() -> None:
    seed_everything("models")
    for name, (model, x) in all_models().items():
        out = model(x)
        assert out.shape[0] == x.shape[0], name
        traced = torch.fx.symbolic_trace(model)
        torch.testing.assert_close(traced(x), out, msg=name)


MODEL_FACTORIES = ["mlp", "cnn", "resnet", "mobilenet", "concat", "flatten"]
