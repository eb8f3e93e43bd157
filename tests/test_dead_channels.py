"""Dead channels left by any pruning tool are removed physically, in export and in convert,
exactly when the graph proves the result unchanged (sparsert._channels).

Each model is compared with PyTorch (export) or onnxruntime (convert) on random inputs of a
printed seed, at max abs error <= 1e-4 * max(1, |reference|); the file's layer weights are read
back to check which channels went."""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from models import randomize_batchnorm_, resnet18_torch  # noqa: E402

import sparsert  # noqa: E402
import sparsert.exporter  # noqa: E402
from sparsert import format as spr  # noqa: E402


def _layer_shapes(path: str) -> list[tuple[str, tuple[int, ...]]]:
    """(op, weight shape) of every Conv / Linear in file order."""
    mf = spr.read(path)
    return [
        (n.op_type, tuple(mf.tensor(n.inputs[1]).dims))
        for n in mf.nodes
        if n.op_type in ("Conv", "Linear", "ConvTranspose")
    ]


def _close(got: np.ndarray, want: np.ndarray) -> None:
    tol = 1e-4 * max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    assert got.shape == want.shape
    assert float(np.max(np.abs(got - want))) <= tol


def _export(model: nn.Module, x: torch.Tensor, path: str) -> sparsert.exporter.ExportResult:
    model.eval()
    r = sparsert.export(model, x, path, verify=True)
    rt = sparsert.load(path)
    for batch in (1, 3):
        xb = torch.randn(batch, *x.shape[1:])
        with torch.no_grad():
            want = model(xb)
        want = list(want) if isinstance(want, tuple) else [want]
        got = rt.run(xb.numpy())
        got = list(got) if isinstance(got, (list, tuple)) else [got]
        for g, w in zip(got, want, strict=True):
            _close(g, w.numpy())
    return r


def _convert(model: nn.Module, x: torch.Tensor, tmp_path) -> str:
    buf = io.BytesIO()
    torch.onnx.export(
        model.eval(),
        x,
        buf,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}},
        dynamo=False,
    )
    src, dst = tmp_path / "m.onnx", tmp_path / "m.spr"
    src.write_bytes(buf.getvalue())
    sparsert.convert(src, dst)
    sess = ort.InferenceSession(buf.getvalue())
    rt = sparsert.load(dst)
    for batch in (1, 3):
        xb = np.random.default_rng(batch).standard_normal((batch, *x.shape[1:])).astype(np.float32)
        _close(rt.run(xb), sess.run(None, {"x": xb})[0])
    return str(dst)


class Chain(nn.Module):
    """conv -> BN -> relu -> conv -> relu -> 1x1 conv -> sigmoid -> maxpool -> flatten -> fc -> relu -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 24, 1)
        self.fc, self.fc2 = nn.Linear(24 * 4 * 4, 20), nn.Linear(20, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.c2(x))
        x = nn.functional.max_pool2d(torch.sigmoid(self.c3(x)), 2)
        return self.fc2(torch.relu(self.fc(torch.flatten(x, 1))))


def _dead_chain(seed: int) -> Chain:
    torch.manual_seed(seed)
    m = Chain().eval()
    randomize_batchnorm_(m)
    with torch.no_grad():
        m.c1.weight[:6] = 0
        m.c1.bias[:6] = 0
        m.b1.bias[:3] = -5.0  # folded bias < 0: relu makes these 3 zero -> removable
        m.b1.bias[3:6] = 5.0  # folded bias > 0 into a padded 3x3 conv: not provably removable
        m.c2.weight[::2] = 0
        m.c2.bias[::2] = 0  # 16 zero channels through relu -> removable
        m.c3.weight[:8] = 0
        m.c3.bias[:8] = torch.linspace(
            -1, 1, 8
        )  # sigmoid -> maxpool -> flatten -> fc bias
        m.fc.weight[:7] = 0
        m.fc.bias[:7] = -1.0  # relu(-1) = 0
    return m


def test_chain_export_removes_exactly_the_provable_channels(tmp_path, seed):
    m = _dead_chain(seed)
    x = torch.randn(2, 3, 8, 8)
    r = _export(m, x, str(tmp_path / "chain.spr"))
    assert "remove_dead_channels=34" in r.summary
    assert _layer_shapes(str(tmp_path / "chain.spr")) == [
        ("Conv", (13, 3, 3, 3)),
        ("Conv", (16, 13, 3, 3)),
        ("Conv", (16, 16, 1, 1)),
        ("Linear", (13, 16 * 16)),
        ("Linear", (5, 13)),
    ]


def test_chain_convert_matches_onnxruntime(tmp_path, seed):
    m = _dead_chain(seed)
    dst = _convert(m, torch.randn(2, 3, 8, 8), tmp_path)
    assert [s for _, s in _layer_shapes(dst)] == [
        (13, 3, 3, 3),
        (16, 13, 3, 3),
        (16, 16, 1, 1),
        (13, 256),
        (5, 13),
    ]


def test_resnet18_half_inner_filters_zeroed_shrinks_to_about_half(tmp_path, seed):
    """The issue's case: half the filters of every block's first conv zeroed by hand (BN left at
    its defaults, so the folded bias is zero): export removes them and the consumers' inputs."""
    torch.manual_seed(seed)
    m = resnet18_torch(num_classes=10).eval()
    dense = sparsert.export(m, torch.randn(1, 3, 32, 32), str(tmp_path / "dense.spr"), verify=True)
    with torch.no_grad():
        for name, mod in m.named_modules():
            if name.endswith("conv1") and "layer" in name:
                mod.weight[: mod.out_channels // 2] = 0
    r = _export(m, torch.randn(1, 3, 32, 32), str(tmp_path / "pruned.spr"))
    ratio = r.file_size / dense.file_size
    print(f"file {r.file_size} / dense {dense.file_size} = {ratio:.3f}")
    assert ratio < 0.6  # about 0.53; 0.90 before the pass
    # the blocks' first convs lose half their filters and the second convs half their inputs;
    # the second convs keep every output channel: their outputs meet the identity in an Add
    before, after = _layer_shapes(str(tmp_path / "dense.spr")), _layer_shapes(str(tmp_path / "pruned.spr"))
    halved_out = [b for (_, b), (_, a) in zip(before, after) if a[0] == b[0] // 2]
    halved_in = [b for (_, b), (_, a) in zip(before, after) if a[0] == b[0] and a[1] == b[1] // 2]
    assert len(halved_out) == 8 and len(halved_in) == 8


def test_ln_structured_and_transformer_ffn(tmp_path, seed):
    """torch.nn.utils.prune.ln_structured masks (weight_orig * mask) and a rank-3 FFN with GELU."""
    from torch.nn.utils import prune as tprune

    torch.manual_seed(seed)

    class FFN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up, self.down = nn.Linear(16, 64), nn.Linear(64, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down(nn.functional.gelu(self.up(x))) + x

    m = FFN().eval()
    tprune.ln_structured(m.up, "weight", amount=0.5, n=2, dim=0)
    with torch.no_grad():
        m.up.bias[m.up.weight_mask[:, 0] == 0] = 0
    tprune.remove(m.up, "weight")
    x = torch.randn(2, 7, 16)
    r = _export(m, x, str(tmp_path / "ffn.spr"))
    assert "remove_dead_channels=32" in r.summary
    assert [s for _, s in _layer_shapes(str(tmp_path / "ffn.spr"))] == [(32, 16), (16, 32)]


class Keeps(nn.Module):
    """Dead channels that must stay: into a residual Add, a Concat, a graph output, a grouped
    conv, and a constant non-zero channel into a padded 3x3 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 4, 1)
        self.b = nn.Conv2d(4, 4, 1)
        self.c = nn.Conv2d(8, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.d = nn.Conv2d(8, 6, 1)
        self.e = nn.Conv2d(6, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.a(x) + x
        y = self.c(torch.cat([a, self.b(x)], 1))
        d = self.d(self.dw(y))
        return self.e(torch.sigmoid(d)), d


@pytest.mark.parametrize("frontend", ["export", "convert"])
def test_channels_that_are_not_provably_dead_stay(tmp_path, seed, frontend):
    torch.manual_seed(seed)
    m = Keeps().eval()
    with torch.no_grad():
        for layer in (m.a, m.b, m.c, m.d):
            layer.weight[:2] = 0
            layer.bias[:2] = 0
    x = torch.randn(2, 4, 6, 6)
    if frontend == "export":
        path = str(tmp_path / "keep.spr")
        r = _export(m, x, path)
        assert "remove_dead_channels=0" in r.summary
    else:
        path = _convert_multi(m, x, tmp_path)
    assert sorted(s[0] for _, s in _layer_shapes(path)) == [4, 4, 6, 6, 8, 8]


def _convert_multi(model: nn.Module, x: torch.Tensor, tmp_path) -> str:
    buf = io.BytesIO()
    torch.onnx.export(model.eval(), x, buf, input_names=["x"], dynamo=False)
    src, dst = tmp_path / "m.onnx", tmp_path / "m.spr"
    src.write_bytes(buf.getvalue())
    sparsert.convert(src, dst)
    xb = np.random.default_rng(0).standard_normal(tuple(x.shape)).astype(np.float32)
    want = ort.InferenceSession(buf.getvalue()).run(None, {"x": xb})
    got = sparsert.load(dst).run(xb)
    for g, w in zip(got, want):
        _close(g, w)
    return str(dst)


def test_all_channels_dead_keeps_one_and_stays_exact(tmp_path, seed):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    with torch.no_grad():
        m[0].weight.zero_()
        m[0].bias.fill_(-1.0)
    r = _export(m, torch.randn(2, 8), str(tmp_path / "zero.spr"))
    assert "remove_dead_channels=5" in r.summary
    assert [s for _, s in _layer_shapes(str(tmp_path / "zero.spr"))] == [(1, 8), (3, 1)]


def test_view_to_2d_in_onnx_reshape_is_followed(tmp_path, seed):
    """x.view(N, -1) exports as a Reshape with a constant shape (fixed batch)."""
    torch.manual_seed(seed)

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8 * 3 * 3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).reshape(2, -1))

    m = Head().eval()
    with torch.no_grad():
        m.conv.weight[1::2] = 0
        m.conv.bias[1::2] = 0.5  # relu(0.5) = 0.5 reaches fc: folded into its bias
    buf = io.BytesIO()
    x = torch.randn(2, 3, 5, 5)
    torch.onnx.export(m, x, buf, input_names=["x"], dynamo=False)
    (tmp_path / "h.onnx").write_bytes(buf.getvalue())
    sparsert.convert(tmp_path / "h.onnx", tmp_path / "h.spr")
    assert [s for _, s in _layer_shapes(str(tmp_path / "h.spr"))] == [(4, 3, 3, 3), (4, 4 * 9)]
    xb = x.numpy()
    _close(
        sparsert.load(tmp_path / "h.spr").run(xb),
        ort.InferenceSession(buf.getvalue()).run(None, {"x": xb})[0],
    )
