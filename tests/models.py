"""Test models shared by the test files and the benchmarks.

- ``resnet18_torch`` and ``mobilenet_v2_torch``: ResNet-18 / MobileNetV2-style
  torch modules written from scratch (torchvision is not a dependency), with a
  V3-style variant (hard-swish + squeeze-excite) of the MobileNet.
- ``randomize_batchnorm_``: random eval-mode BatchNorm statistics, so folding
  is exercised with non-trivial values.
- ``magnitude_prune_``: in-place global-per-layer magnitude pruning of the
  conv / linear weights (a test helper, independent of ``sparsert.prune``).
- ``build_spr``: a small, test-only converter from these modules to a ``.spr``
  graph through ``sparsert.GraphBuilder``. It walks the known module structure
  (Conv2d + folded BatchNorm + activation, residual adds fused into Conv2d as
  its R input, pooling, Linear); it is not the exporter (``sparsert.export``)
  and does not try to handle arbitrary modules.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

# ---------------------------------------------------------------------------
# ResNet-18


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000, widths: Sequence[int] = (64, 128, 256, 512)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers = []
        inplanes = widths[0]
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18_torch(num_classes: int = 1000) -> ResNet18:
    """A ResNet-18-style network (BasicBlocks [2, 2, 2, 2], widths 64..512)."""
    return ResNet18(num_classes)


# ---------------------------------------------------------------------------
# MobileNetV2 (and a V3-style variant)


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + activation ("relu6", "hardswish", "relu" or "none")."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: str = "relu6"
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act == "relu6":
            layers.append(nn.ReLU6())
        elif act == "hardswish":
            layers.append(nn.Hardswish())
        elif act == "relu":
            layers.append(nn.ReLU())
        elif act != "none":
            raise ValueError(f"unknown activation {act!r}")
        super().__init__(*layers)
        self.act = act


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-excite: x * hardsigmoid(fc2(relu(fc1(mean(x)))))."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.mean(x, dim=(2, 3), keepdim=True)
        s = nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))
        return x * s


class InvertedResidual(nn.Module):
    def __init__(
        self, cin: int, cout: int, stride: int, expand: int, act: str = "relu6", use_se: bool = False
    ) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.expand = ConvBNAct(cin, hidden, 1, act=act) if expand != 1 else None
        self.depthwise = ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=act)
        self.se = SqueezeExcite(hidden, _make_divisible(hidden // 4)) if use_se else None
        self.project = ConvBNAct(hidden, cout, 1, act="none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.expand is None else self.expand(x)
        h = self.depthwise(h)
        if self.se is not None:
            h = self.se(h)
        h = self.project(h)
        return x + h if self.use_residual else h


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class MobileNetV2(nn.Module):
    # expansion t, output channels c, repeats n, first stride s (Sandler et al. 2018, table 2)
    CONFIG = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, num_classes: int = 1000, v3_style: bool = False, width_mult: float = 1.0) -> None:
        super().__init__()
        act = "hardswish" if v3_style else "relu6"
        cin = _make_divisible(32 * width_mult)
        blocks: list[nn.Module] = [ConvBNAct(3, cin, 3, 2, act=act)]
        for i, (t, c, n, s) in enumerate(self.CONFIG):
            cout = _make_divisible(c * width_mult)
            for j in range(n):
                # V3-style: squeeze-excite in the later stages
                blocks.append(
                    InvertedResidual(cin, cout, s if j == 0 else 1, t, act=act, use_se=v3_style and i >= 3)
                )
                cin = cout
        last = _make_divisible(1280 * max(1.0, width_mult))
        blocks.append(ConvBNAct(cin, last, 1, act=act))
        self.features = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v2_torch(
    num_classes: int = 1000, v3_style: bool = False, width_mult: float = 1.0
) -> MobileNetV2:
    """MobileNetV2-style network: inverted residuals, depthwise 3x3, ReLU6.

    v3_style=True uses hard-swish and adds squeeze-excite blocks (hard-sigmoid
    gate) in the later stages, as MobileNetV3."""
    return MobileNetV2(num_classes, v3_style, width_mult)


# ---------------------------------------------------------------------------
# helpers: random BN statistics, magnitude pruning


def randomize_batchnorm_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Random BatchNorm weight / bias / running stats (in place); returns ``module`` in eval mode."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=generator) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=generator) * 0.5 + 0.75)
    return module.eval()


def magnitude_prune_(
    module: nn.Module, sparsity: float, skip_first: bool = True, skip_depthwise: bool = True
) -> nn.Module:
    """Zero the smallest-magnitude ``sparsity`` share of each Conv2d / Linear weight, in place.

    skip_first keeps the first conv dense; skip_depthwise keeps depthwise
    convs (groups == in_channels, one input channel per group) dense. Ties at
    the threshold are broken by position so exactly round(sparsity * size)
    weights become zero. Returns ``module``."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    first = True
    with torch.no_grad():
        for m in module.modules():
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            is_first = first and isinstance(m, nn.Conv2d)
            first = first and not isinstance(m, nn.Conv2d)
            if skip_first and is_first:
                continue
            if skip_depthwise and isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels:
                continue
            w = m.weight.detach().numpy().reshape(-1)  # shares memory with the parameter
            k = int(round(sparsity * w.size))
            if k:
                order = np.argsort(np.abs(w), kind="stable")
                w[order[:k]] = 0.0
    return module


# ---------------------------------------------------------------------------
# torch module -> .spr (test-only converter)


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight and bias with an eval-mode BatchNorm folded in (float64 math, float32 result).
    Zeros of the weight stay zeros (the scale is per output channel)."""
    w = conv.weight.detach().double().numpy()
    b = conv.bias.detach().double().numpy() if conv.bias is not None else np.zeros(w.shape[0])
    if bn is not None:
        scale = bn.weight.detach().double().numpy() / np.sqrt(
            bn.running_var.detach().double().numpy() + bn.eps
        )
        w = w * scale[:, None, None, None]
        b = (b - bn.running_mean.detach().double().numpy()) * scale + bn.bias.detach().double().numpy()
    return w.astype(np.float32), b.astype(np.float32)


class _Converter:
    def __init__(self, name: str, storage: str) -> None:
        import sparsert

        self.b = sparsert.GraphBuilder(name, producer="tests/models.py")
        self.storage = storage
        self.count = 0

    def conv(
        self,
        x: str,
        conv: nn.Conv2d,
        bn: nn.BatchNorm2d | None,
        act: str,
        residual: str | None = None,
        activation_params: Sequence[float] | None = None,
    ) -> str:
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("only explicit zero padding is supported")
        w, bias = fold_batchnorm(conv, bn)
        self.count += 1
        name = f"conv{self.count}"
        ph, pw = conv.padding
        attrs: dict[str, object] = {
            "strides": list(conv.stride),
            "pads": [ph, pw, ph, pw],
            "dilations": list(conv.dilation),
            "group": conv.groups,
            "activation": act,
        }
        if activation_params is not None:
            attrs["activation_params"] = [float(v) for v in activation_params]
        inputs = [
            x,
            self.b.constant(f"{name}.w", w, storage=self.storage),
            self.b.constant(f"{name}.b", bias),
        ]
        if residual is not None:
            inputs.append(residual)
        return self.b.node("Conv", inputs, attrs, name=name)

    def conv_bn_act(self, x: str, block: ConvBNAct, residual: str | None = None) -> str:
        return self.conv(x, block[0], block[1], block.act, residual)

    def linear(self, x: str, fc: nn.Linear) -> str:
        self.count += 1
        name = f"fc{self.count}"
        w = fc.weight.detach().float().numpy()
        inputs = [x, self.b.constant(f"{name}.w", w, storage=self.storage)]
        if fc.bias is not None:
            inputs.append(self.b.constant(f"{name}.b", fc.bias.detach().float().numpy()))
        return self.b.node("Linear", inputs, name=name)

    def head(self, x: str, fc: nn.Linear) -> str:
        x = self.b.node("GlobalAveragePool", [x])
        x = self.b.node("Flatten", [x], {"axis": 1})
        return self.linear(x, fc)


def _resnet_to_spr(c: _Converter, m: ResNet18, x: str) -> str:
    x = c.conv(x, m.conv1, m.bn1, "relu")
    mp = m.maxpool
    x = c.b.node(
        "MaxPool",
        [x],
        {
            "kernel_shape": [mp.kernel_size] * 2,
            "strides": [mp.stride] * 2,
            "pads": [mp.padding] * 4,
            "ceil_mode": int(mp.ceil_mode),
        },
    )
    for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
        for block in layer:
            identity = (
                x if block.downsample is None else c.conv(x, block.downsample[0], block.downsample[1], "none")
            )
            h = c.conv(x, block.conv1, block.bn1, "relu")
            x = c.conv(h, block.conv2, block.bn2, "relu", residual=identity)  # relu(conv + bn + identity)
    return c.head(x, m.fc)


def _mobilenet_to_spr(c: _Converter, m: MobileNetV2, x: str) -> str:
    for block in m.features:
        if isinstance(block, ConvBNAct):
            x = c.conv_bn_act(x, block)
            continue
        assert isinstance(block, InvertedResidual)
        h = x if block.expand is None else c.conv_bn_act(x, block.expand)
        h = c.conv_bn_act(h, block.depthwise)
        if block.se is not None:
            s = c.b.node("GlobalAveragePool", [h])
            s = c.conv(s, block.se.fc1, None, "relu")
            s = c.conv(s, block.se.fc2, None, "hardsigmoid", activation_params=[1.0 / 6.0, 0.5])
            h = c.b.node("Mul", [h, s])
        x = c.conv_bn_act(h, block.project, residual=x if block.use_residual else None)
    return c.head(x, m.classifier)


def build_spr(module: nn.Module, input_shape: Sequence[int], storage: str = "auto") -> bytes:
    """Convert a module from this file to ``.spr`` bytes (module must be in eval mode).

    input_shape: [N, 3, H, W], -1 allowed for the batch. storage: constant
    storage for conv / linear weights ("dense", "csr" or "auto")."""
    if module.training:
        raise ValueError("build_spr needs the module in eval mode (BatchNorm is folded)")
    c = _Converter(type(module).__name__, storage)
    x = c.b.input("x", input_shape)
    if isinstance(module, ResNet18):
        y = _resnet_to_spr(c, module, x)
    elif isinstance(module, MobileNetV2):
        y = _mobilenet_to_spr(c, module, x)
    else:
        raise TypeError(
            f"build_spr handles ResNet18 and MobileNetV2 from tests/models.py, not {type(module).__name__}"
        )
    c.b.output(y, "logits")
    return c.b.to_bytes()
