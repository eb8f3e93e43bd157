"""sparsert.export of the less common mappings: ConvTranspose2d + BatchNorm, Upsample/interpolate,
a small attention block (LayerNorm, matmul, transpose/permute, softmax), scalar arithmetic, split.

Outputs must match PyTorch (eval mode) within RTOL relative to the output's largest magnitude, at
the example batch and another batch size. Seeds are printed (SPARSERT_TEST_SEED replays one).
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import sparsert  # noqa: E402
from sparsert import format as spr  # noqa: E402

RTOL = 1e-4
THREADS = 2  # see tests/test_export.py


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("SPARSERT_TEST_SEED", random.randrange(2**31)))
    print(f"seed = {value}")
    torch.manual_seed(value)
    return value


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up1 = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(6, 4, 3, padding=1)
        self.act = nn.Hardtanh(-0.5, 0.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.bn(self.up1(x)), 0.2)
        y = self.act(self.conv(self.up2(y)))
        return F.interpolate(y, size=(13, 11), mode="bilinear", align_corners=True)


class Attention(nn.Module):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 32), nn.GELU(), nn.Linear(32, dim))
        self.scale = dim**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        x = x + self.proj(attn @ v)
        return x + self.mlp(x)


class Arithmetic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.register_buffer("offset", torch.linspace(-1, 1, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        y = (1.0 - y) * 0.5 + self.offset
        y = 2.0 / (torch.sigmoid(y) + 1.0) - y / 3
        a, b = torch.split(y, [3, 5], dim=1)
        z = torch.cat([b, F.silu(a), torch.tanh(a).clamp(-0.4, 0.4)], dim=1)
        return z.unsqueeze(1).permute(0, 2, 1).reshape(x.shape[0], -1)


def _check(model: nn.Module, x: torch.Tensor, path: str) -> spr.ModelFile:
    model.eval()
    result = sparsert.export(model, x, path, verify=True, threads=THREADS)
    print(result.summary)
    assert result.max_rel_error <= RTOL
    loaded = sparsert.load(path, threads=THREADS)
    for batch in (x, torch.randn(x.shape[0] + 1, *x.shape[1:])):
        with torch.no_grad():
            want = model(batch).numpy()
        got = loaded.run(batch.numpy())
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) <= RTOL * np.max(np.abs(want))
    return spr.read(path)


def test_decoder(seed: int, tmp_path) -> None:
    model = Decoder()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2)
    mf = _check(model, torch.randn(2, 8, 5, 6), str(tmp_path / "d.spr"))
    ops = [n.op_type for n in mf.nodes]
    assert "BatchNormalization" not in ops  # folded into the ConvTranspose2d
    resize = [n for n in mf.nodes if n.op_type == "Resize"]
    assert [n.attrs["mode"] for n in resize] == ["nearest", "linear"]
    assert resize[1].attrs["coordinate_transformation_mode"] == "align_corners"


def test_attention(seed: int, tmp_path) -> None:
    mf = _check(Attention(), torch.randn(2, 7, 16), str(tmp_path / "a.spr"))
    ops = {n.op_type for n in mf.nodes}
    assert {"LayerNormalization", "MatMul", "Transpose", "Softmax", "Split"} <= ops


def test_arithmetic_with_scalars_and_constants(seed: int, tmp_path) -> None:
    mf = _check(Arithmetic(), torch.randn(4, 6), str(tmp_path / "s.spr"))
    ops = [n.op_type for n in mf.nodes]
    assert {"Sub", "Mul", "Add", "Div", "Split", "Concat", "Clip"} <= set(ops)


def test_batchnorm_kept_when_not_foldable(seed: int, tmp_path) -> None:
    class TwoReaders(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y  # the conv output has two readers: BN cannot be folded

    model = TwoReaders()
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 2)
    mf = _check(model, torch.randn(1, 3, 6, 6), str(tmp_path / "b.spr"))
    assert "BatchNormalization" in [n.op_type for n in mf.nodes]
