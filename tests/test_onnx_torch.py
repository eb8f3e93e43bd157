"""sparsert.convert on models exported by torch.onnx.export, checked against onnxruntime.

Tolerance: |sparsert - onnxruntime| <= 1e-4 + 1e-4 * |onnxruntime| element-wise
(float32 kernels that sum in a different order). Weights and inputs come from
a seed printed by each test.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import sparsert
from sparsert import format as spr

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
nn = torch.nn
F = torch.nn.functional

RTOL = ATOL = 1e-4


def requires_ops(*ops: str) -> pytest.MarkDecorator:
    missing = sorted(set(ops) - set(sparsert.supported_ops()))
    return pytest.mark.skipif(bool(missing), reason=f"this build of the runtime lacks op(s) {missing}")


def _seed(seed: int) -> np.random.Generator:
    # `seed` (tests/conftest.py) is printed and replayable with SPARSERT_TEST_SEED
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _export(model: nn.Module, x: torch.Tensor, path: str, opset: int, dynamic_batch: bool = False) -> None:
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_axes"] = {"x": {0: "batch"}, "y": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (x,),
            path,
            opset_version=opset,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            **kwargs,
        )


def _check(onnx_path: str, spr_path: str, x: np.ndarray, **kwargs: object) -> sparsert.Model:
    sparsert.convert(onnx_path, spr_path, **kwargs)
    model = sparsert.load(spr_path)
    want = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = model.run(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    return model


def _nodes(path: str) -> list[spr.Node]:
    """The graph as it runs: the file's nodes after the loader's fusions."""
    return sparsert.load(path).nodes


def _ops(path: str) -> list[str]:
    return [n.op_type for n in _nodes(path)]


# --------------------------------------------------------------------------- models


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(20, 64)
        self.fc2 = nn.Linear(64, 33)
        self.fc3 = nn.Linear(33, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(x))
        h = F.gelu(self.fc2(h))
        return torch.softmax(self.fc3(h), dim=-1)


class ResBlock(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(c)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.down = nn.Conv2d(c, 2 * c, 1, stride=2)
        self.fc = nn.Linear(2 * c, 5)
        for bn in (self.bn0, self.bn1, self.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn0(self.stem(x))))
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        x = F.relu(h + x)
        x = F.relu(self.down(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, max(4, c // 4), 1)
        self.fc2 = nn.Conv2d(max(4, c // 4), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class InvertedResidual(nn.Module):
    def __init__(self, c: int, expand: int, se: bool) -> None:
        super().__init__()
        h = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.Hardswish())
        self.dw = nn.Sequential(
            nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h), nn.Hardswish()
        )
        self.se = SqueezeExcite(h) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.se(self.dw(self.expand(x))))


class MobileNetish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6()
        )
        self.b1 = InvertedResidual(8, 3, se=True)
        self.b2 = InvertedResidual(8, 2, se=False)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(8, 6))
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b2(self.b1(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))


class SegHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(3, 6, 3, padding=1)
        self.enc2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.enc3 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.fuse = nn.Conv2d(16, 6, 1)
        self.cls = nn.Conv2d(12, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = F.relu(self.enc1(x))
        f2 = F.relu(self.enc2(f1))
        f3 = F.relu(self.enc3(f2))
        u = torch.cat([F.interpolate(f3, scale_factor=2.0, mode="nearest"), self.up(f3)], dim=1)
        u = F.leaky_relu(self.fuse(u), 0.1)
        u = F.interpolate(u, size=f1.shape[2:], mode="bilinear", align_corners=False)
        return self.cls(torch.cat([u, f1], dim=1))


class AttentionBlock(nn.Module):
    """Pre-norm self-attention + tanh-GELU MLP; view/chunk shapes come from x.shape (Shape subgraphs)."""

    def __init__(self, c: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.ln = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.ff = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(approximate="tanh"), nn.Linear(2 * c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln(x)).chunk(3, dim=-1)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        a = torch.softmax(q @ k.transpose(-2, -1) / (c // self.heads) ** 0.5, dim=-1)
        x = x + self.proj((a @ v).transpose(1, 2).reshape(b, t, c))
        return x + self.ff(x)[:, 1:, :].mean(dim=1, keepdim=True)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("opset", [11, 13, 17, 20])
def test_mlp(tmp_path: os.PathLike[str], seed: int, opset: int) -> None:
    _seed(seed)
    x = torch.randn(4, 20)
    src, dst = os.path.join(tmp_path, "mlp.onnx"), os.path.join(tmp_path, "mlp.spr")
    _export(MLP(), x, src, opset)
    model = _check(src, dst, x.numpy())
    ops = _ops(dst)
    assert ops.count("Linear") == 3 and "Gelu" not in ops  # gelu (and relu) fused into the Linears
    acts = [n.attrs.get("activation") for n in _nodes(dst) if n.op_type == "Linear"]
    assert acts == ["relu", "gelu", None] or acts == ["relu", "gelu", "none"]
    md = model.metadata
    assert md["sparsert.producer"] == "sparsert.convert"
    assert md["onnx.source"] == "mlp.onnx" and md["onnx.producer_name"] == "pytorch"
    assert str(md["onnx.opset"]) == str(opset)


def test_mlp_dynamic_batch(tmp_path: os.PathLike[str], seed: int) -> None:
    _seed(seed)
    x = torch.randn(2, 20)
    src, dst = os.path.join(tmp_path, "mlp.onnx"), os.path.join(tmp_path, "mlp.spr")
    _export(MLP(), x, src, 13, dynamic_batch=True)
    # the batch stays dynamic: one .spr for every batch size
    rng = np.random.default_rng(seed)
    for batch in (1, 5):
        model = _check(src, dst, rng.standard_normal((batch, 20)).astype(np.float32))
    assert model.inputs[0].shape == (-1, 20) and model.inputs[0].dim_names == ("batch", "")
    # or frozen, when the user fixes it
    xs = rng.standard_normal((5, 20)).astype(np.float32)
    model = _check(src, dst, xs, input_shapes={"x": (5, 20)})
    assert model.inputs[0].shape == (5, 20)


@requires_ops("Conv", "MaxPool", "GlobalAveragePool")
@pytest.mark.parametrize("opset", [11, 17])
def test_resnet_block(tmp_path: os.PathLike[str], seed: int, opset: int) -> None:
    _seed(seed)
    x = torch.randn(2, 3, 17, 15)
    src, dst = os.path.join(tmp_path, "res.onnx"), os.path.join(tmp_path, "res.spr")
    _export(ResBlock(), x, src, opset)
    _check(src, dst, x.numpy())
    nodes = _nodes(dst)
    ops = [n.op_type for n in nodes]
    assert "BatchNormalization" not in ops and "Relu" not in ops and "Add" not in ops  # all folded into Conv2d
    residual = [n for n in nodes if n.op_type == "Conv" and len(n.inputs) == 4 and n.inputs[3]]
    assert len(residual) == 1 and residual[0].attrs.get("activation") == "relu"


@requires_ops("Conv", "GlobalAveragePool", "ReduceMean")
@pytest.mark.parametrize("opset", [11, 13, 17])
def test_mobilenet_like(tmp_path: os.PathLike[str], seed: int, opset: int) -> None:
    _seed(seed)
    x = torch.randn(1, 3, 32, 32)
    src, dst = os.path.join(tmp_path, "mb.onnx"), os.path.join(tmp_path, "mb.spr")
    _export(MobileNetish(), x, src, opset)
    _check(src, dst, x.numpy())
    nodes = _nodes(dst)
    acts = {n.attrs.get("activation") for n in nodes if n.op_type == "Conv"}
    assert {"hardswish", "clip", "hardsigmoid", "relu"} <= acts
    assert "BatchNormalization" not in [n.op_type for n in nodes]


@requires_ops("Conv", "ConvTranspose", "Resize", "Concat")
@pytest.mark.parametrize("opset", [11, 13, 18])
def test_segmentation_head(tmp_path: os.PathLike[str], seed: int, opset: int) -> None:
    _seed(seed)
    x = torch.randn(1, 3, 20, 24)
    src, dst = os.path.join(tmp_path, "seg.onnx"), os.path.join(tmp_path, "seg.spr")
    _export(SegHead(), x, src, opset)
    _check(src, dst, x.numpy())
    resizes = [n for n in spr.read(dst).nodes if n.op_type == "Resize"]
    assert sorted(n.attrs["mode"] for n in resizes) == ["linear", "nearest"]


def _sparse_mlp(sparsity: float, seed: int) -> nn.Module:
    m = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 96), nn.ReLU(), nn.Linear(96, 10))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in m:
            if isinstance(layer, nn.Linear) and layer.out_features != 10:
                mask = torch.rand(layer.weight.shape, generator=gen) >= sparsity
                layer.weight.mul_(mask)
    return m


def test_zeros_become_csr_and_smaller(tmp_path: os.PathLike[str], seed: int) -> None:
    _seed(seed)
    x = torch.randn(3, 64)
    src = os.path.join(tmp_path, "sp.onnx")
    _export(_sparse_mlp(0.9, seed), x, src, 13)
    auto = _check(src, os.path.join(tmp_path, "auto.spr"), x.numpy())
    _check(src, os.path.join(tmp_path, "dense.spr"), x.numpy(), storage="dense")
    f = spr.read(os.path.join(tmp_path, "auto.spr"))
    weights = {n.name: f.tensor(n.inputs[1]).storage for n in f.nodes if n.op_type == "Linear"}
    assert sorted(weights.values()) == ["csr", "csr", "dense"]  # the last layer has no zeros
    dense_f = spr.read(os.path.join(tmp_path, "dense.spr"))
    assert {dense_f.tensor(n.inputs[1]).storage for n in dense_f.nodes if n.op_type == "Linear"} == {"dense"}
    size_auto = os.path.getsize(os.path.join(tmp_path, "auto.spr"))
    size_dense = os.path.getsize(os.path.join(tmp_path, "dense.spr"))
    assert size_auto < 0.5 * size_dense
    storages = [r["weight_storage"] for r in auto.summary() if r["op"] == "Linear"]
    assert storages.count("csr") == 2


def test_dense_model_stays_dense(tmp_path: os.PathLike[str], seed: int) -> None:
    _seed(seed)
    x = torch.randn(2, 64)
    src, dst = os.path.join(tmp_path, "d.onnx"), os.path.join(tmp_path, "d.spr")
    _export(_sparse_mlp(0.0, seed), x, src, 13)
    _check(src, dst, x.numpy())
    f = spr.read(dst)
    assert {t.storage for t in f.tensors} == {"dense"}


@requires_ops("Conv", "MaxPool", "GlobalAveragePool")
def test_prune_magnitude(tmp_path: os.PathLike[str], seed: int) -> None:
    _seed(seed)
    x = torch.randn(1, 3, 16, 16)
    src, dst = os.path.join(tmp_path, "r.onnx"), os.path.join(tmp_path, "r.spr")
    _export(ResBlock(c=16), x, src, 13)
    with pytest.warns(UserWarning, match="fine-tuning"):
        sparsert.convert(src, dst, prune={"method": "magnitude", "sparsity": 0.75})
    f = spr.read(dst)
    convs = [n for n in f.nodes if n.op_type in ("Conv", "Linear")]
    first = f.tensor(convs[0].inputs[1]).to_dense()
    assert np.count_nonzero(first) > 0.9 * first.size  # the first conv is skipped
    for n in convs[1:]:
        t = f.tensor(n.inputs[1])
        zeros = 1.0 - np.count_nonzero(t.to_dense()) / t.elements
        assert abs(zeros - 0.75) < 0.02, (n.name, zeros)
        assert t.storage == "csr"
    out = sparsert.load(dst).run(x.numpy())
    assert out.shape == (1, 5) and np.all(np.isfinite(out))


@requires_ops("Conv", "ConvTranspose", "MaxPool", "ReduceMean", "Resize", "Concat")
@pytest.mark.parametrize(
    "cls,shape",
    [(MLP, (4, 20)), (ResBlock, (2, 3, 17, 15)), (MobileNetish, (1, 3, 32, 32)), (SegHead, (1, 3, 20, 24))],
    ids=["mlp", "resnet", "mobilenet", "seg"],
)
def test_dynamo_exporter(tmp_path: os.PathLike[str], seed: int, cls: type, shape: tuple[int, ...]) -> None:
    """The torch.export-based exporter (dynamo=True, needs onnxscript) writes a different op mix."""
    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs the onnxscript package")
    _seed(seed)
    x = torch.randn(*shape)
    src, dst = os.path.join(tmp_path, "d.onnx"), os.path.join(tmp_path, "d.spr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            cls().eval(), (x,), src, dynamo=True, input_names=["x"], output_names=["y"], opset_version=18
        )
    _check(src, dst, x.numpy())


@requires_ops("LayerNormalization", "Split", "Transpose", "MatMul", "ReduceMean")
@pytest.mark.parametrize("opset", [13, 17])
def test_attention_block_dynamic_axes(tmp_path: os.PathLike[str], seed: int, opset: int) -> None:
    rng = _seed(seed)
    x = torch.randn(2, 7, 32)
    src, dst = os.path.join(tmp_path, "a.onnx"), os.path.join(tmp_path, "a.spr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            AttentionBlock().eval(),
            (x,),
            src,
            opset_version=opset,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch", 1: "tokens"}},
        )
    # batch and tokens stay dynamic: the Shape/Reshape subgraph runs in the runtime
    for shape in ((1, 7, 32), (3, 11, 32)):
        dyn = _check(src, dst, rng.standard_normal(shape).astype(np.float32))
    assert dyn.inputs[0].shape == (-1, -1, 32) and dyn.inputs[0].dim_names == ("batch", "tokens", "")
    xs = rng.standard_normal((3, 5, 32)).astype(np.float32)
    _check(src, dst, xs, input_shapes={"x": xs.shape})
    ops = _ops(dst)
    assert {"LayerNormalization", "Softmax", "MatMul"} <= set(ops) and "Shape" not in ops
    acts = [n.attrs.get("activation") for n in _nodes(dst) if n.op_type == "Linear"]
    assert "gelu_tanh" in acts
