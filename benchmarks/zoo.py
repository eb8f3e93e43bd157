"""The architectures users bring, as PyTorch modules with random weights, for the side-by-side
runs of ``benchmarks/compare_zoo.py`` (exported to ONNX; onnxruntime runs the ONNX file and
sparsert the file ``sparsert.convert`` makes of it, so both run exactly the same graph).

Written from the papers' layer tables, not copied from any library: ResNet-50 (bottlenecks),
SqueezeNet 1.1 (fire modules, concat), DenseNet-121 (dense blocks: concat of every earlier
layer, 1x1 + 3x3 with BN-ReLU before each conv, average-pool transitions), an Inception-v1-style
net (four parallel branches per module), EfficientNet-B0 (MBConv with SiLU and squeeze-excitation)
and a ViT-S/16-style encoder (16x16 patches, class token, 12 pre-LN blocks of 6-head attention).
BatchNorm statistics are randomised so that folding them is not a no-op.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import torch
from torch import nn

ZOO: dict[str, Callable[[], nn.Module]] = {}
INPUT = {"vit_s16": (3, 224, 224)}


def _register(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    def wrap(fn: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        ZOO[name] = fn
        return fn

    return wrap


def cbr(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU,
        pad: int | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2 if pad is None else pad, groups=groups,
                                         bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


# --- ResNet-50 -------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int) -> None:
        super().__init__()
        cout = mid * 4
        self.body = nn.Sequential(cbr(cin, mid, 1), cbr(mid, mid, 3, stride), cbr(mid, cout, 1, act=None))
        self.skip = cbr(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


@_register("resnet50")
def resnet50() -> nn.Module:
    layers: list[nn.Module] = [cbr(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for mid, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            layers.append(Bottleneck(cin, mid, stride if i == 0 else 1))
            cin = mid * 4
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000))


# --- SqueezeNet 1.1 --------------------------------------------------------------------------
class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.e1(s), self.e3(s)], 1)


@_register("squeezenet")
def squeezenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(64, 16, 64), Fire(128, 16, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(128, 32, 128), Fire(256, 32, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(256, 48, 192), Fire(384, 48, 192), Fire(384, 64, 256), Fire(512, 64, 256),
        nn.Dropout(0.5), nn.Conv2d(512, 1000, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


# --- DenseNet-121 ----------------------------------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 4 * growth, 1, bias=False),
                                  nn.BatchNorm2d(4 * growth), nn.ReLU(),
                                  nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


@_register("densenet121")
def densenet121() -> nn.Module:
    growth, c = 32, 64
    layers: list[nn.Module] = [cbr(3, c, 7, 2), nn.MaxPool2d(3, 2, 1)]
    for i, n in enumerate([6, 12, 24, 16]):
        for _ in range(n):
            layers.append(DenseLayer(c, growth))
            c += growth
        if i < 3:
            layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2, 2)]
            c //= 2
    return nn.Sequential(*layers, nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(c, 1000))


# --- Inception-v1 style ----------------------------------------------------------------------
class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int) -> None:
        super().__init__()
        self.b1 = cbr(cin, c1, 1)
        self.b3 = nn.Sequential(cbr(cin, c3r, 1), cbr(c3r, c3, 3))
        self.b5 = nn.Sequential(cbr(cin, c5r, 1), cbr(c5r, c5, 3), cbr(c5, c5, 3))  # 5x5 as two 3x3 (v2)
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), cbr(cin, pool, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


@_register("inception")
def inception() -> nn.Module:
    cfg = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), None,
           (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64),
           (512, 128, 128, 256, 24, 64, 64),
           (512, 112, 144, 288, 32, 64, 64), (528, 256, 160, 320, 32, 128, 128), None,
           (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)]
    layers: list[nn.Module] = [cbr(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1), cbr(64, 64, 1), cbr(64, 192, 3),
                               nn.MaxPool2d(3, 2, 1)]
    for c in cfg:
        layers.append(nn.MaxPool2d(3, 2, 1) if c is None else Inception(*c))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000))


# --- EfficientNet-B0 -------------------------------------------------------------------------
class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        se = max(1, cin // 4)
        self.expand = cbr(cin, mid, 1, act=nn.SiLU) if expand != 1 else nn.Identity()
        self.dw = cbr(mid, mid, k, stride, groups=mid, act=nn.SiLU)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid, se, 1), nn.SiLU(),
                                nn.Conv2d(se, mid, 1),
                                nn.Sigmoid())
        self.project = cbr(mid, cout, 1, act=None)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dw(self.expand(x))
        h = self.project(h * self.se(h))
        return x + h if self.residual else h


@_register("efficientnet_b0")
def efficientnet_b0() -> nn.Module:
    layers: list[nn.Module] = [cbr(3, 32, 3, 2, act=nn.SiLU)]
    cin = 32
    for expand, cout, n, stride, k in [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3),
                                       (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3)]:
        for i in range(n):
            layers.append(MBConv(cin, cout, k, stride if i == 0 else 1, expand))
            cin = cout
    return nn.Sequential(*layers, cbr(cin, 1280, 1, act=nn.SiLU), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(1280, 1000))


# --- ViT-S/16 style --------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        x = x + self.proj((a @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    def __init__(self, dim: int = 384, depth: int = 12, heads: int = 6, patch: int = 16,
                 image: int = 224) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


@_register("vit_s16")
def vit_s16() -> nn.Module:
    return ViT()


def build(name: str, seed: int = 0) -> nn.Module:
    """The model `name` of ZOO in eval mode, random weights and BatchNorm statistics from `seed`."""
    if name not in ZOO:
        raise SystemExit(f"unknown model {name!r}: choose from {', '.join(ZOO)}")
    torch.manual_seed(seed)
    model = ZOO[name]().eval()
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def to_onnx(model: nn.Module, shape: tuple[int, ...], opset: int = 13, dynamic_batch: bool = False) -> bytes:
    """ONNX bytes with input "x" of batch 1 (the TorchScript exporter). Opset 13 and IR version 8
    by default, so that DeepSparse 1.8 (onnx 1.14) reads the same files: LayerNorm and GELU then
    come as the primitive ops PyTorch spells them with, which sparsert and onnxruntime fuse."""
    import onnx

    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, torch.randn(1, *shape), buf, input_names=["x"], output_names=["y"],
                          opset_version=opset, dynamo=False,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}} if dynamic_batch else None)
    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = min(proto.ir_version, 8)
    return proto.SerializeToString()


def magnitude_prune_(model: nn.Module, sparsity: float, block_rows: int = 1) -> nn.Module:
    """Zero the `sparsity` share of smallest |w| of every Linear and non-depthwise, non-stem conv
    (with `block_rows` > 1: of its block_rows x 1 blocks, ranked by their L2 norm)."""
    from sparsert._blocks import block_magnitude_mask

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1 and m.in_channels > 3):
                w = m.weight
                if block_rows > 1:
                    mask = block_magnitude_mask(w.numpy(), sparsity, (block_rows, 1))
                    if mask is not None:
                        w[~torch.from_numpy(mask)] = 0.0
                    continue
                k = int(sparsity * w.numel())
                if k:
                    threshold = w.abs().flatten().kthvalue(k).values
                    w[w.abs() <= threshold] = 0.0
    return model


PRETTY = {"resnet50": "ResNet-50", "squeezenet": "SqueezeNet 1.1", "densenet121": "DenseNet-121",
          "inception": "Inception-style", "efficientnet_b0": "EfficientNet-B0", "vit_s16": "ViT-S/16"}


def main(argv: list[str] | None = None) -> int:
    """Write <model>_s0.onnx (dense) and <model>_s<pct>.onnx (magnitude-pruned) for the
    side-by-side runner::

        python -m benchmarks.zoo OUT_DIR [--sparsity 90] [--models resnet50,vit_s16]
        python -m benchmarks.peers.side_by_side --models OUT_DIR --libraries sparsert onnxruntime
    """
    import argparse
    import os

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("out")
    ap.add_argument("--sparsity", type=int, nargs="*", default=[90],
                    help="percent; 0 = dense is always written")
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--block", type=int, default=0,
                    help="also write the sparse models pruned in BLOCKx1 blocks (<model>_s90b4.onnx for 4)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    variants = [(0, 1)] + [(p, 1) for p in args.sparsity] + [(p, args.block) for p in args.sparsity if args.block > 1]
    for name in args.models.split(","):
        for pct, rows in variants:
            model = magnitude_prune_(build(name), pct / 100, rows) if pct else build(name)
            tag = f"{pct}" + (f"b{rows}" if rows > 1 else "")
            path = os.path.join(args.out, f"{name}_s{tag}.onnx")
            with open(path + ".tmp", "wb") as f:
                f.write(to_onnx(model, INPUT.get(name, (3, 224, 224))))
            os.replace(path + ".tmp", path)
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
