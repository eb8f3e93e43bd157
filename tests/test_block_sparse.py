"""Block sparsity end to end: ``magnitude_prune(block=...)`` masks, the runtime's 4x1 block
kernels (chosen at load from the weight's pattern, whatever the file stores) against PyTorch,
and ``convert`` with ``block=4x1`` against onnxruntime.

Tolerance: |sparsert - reference| <= 1e-4 * (1 + max |reference|) (float32 sums in another order).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from test_prune_models import all_models, seed_everything
from torch import nn

import sparsert
import sparsert.prune as sp

TOL = 1e-4


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if want.size:
        assert np.abs(got - want).max() <= TOL * (1.0 + np.abs(want).max())


def _matrix(w: torch.Tensor) -> np.ndarray:
    return w.detach().reshape(w.shape[0], -1).numpy()


def _check_block_pattern(w: np.ndarray, block: tuple[int, int]) -> None:
    """Every (bo x bi) tile of the matrix view is all zero or was kept whole."""
    bo, bi = block
    rows, cols = w.shape
    for r in range(0, rows, bo):
        for c in range(0, cols, bi):
            tile = w[r : r + bo, c : c + bi]
            assert (tile == 0).all() or (tile != 0).all(), (r, c)


@pytest.mark.parametrize("block", [(4, 1), (2, 2), (1, 4), (8, 1)])
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_block_masks_keep_whole_blocks_and_count_blocks(name: str, block: tuple[int, int]) -> None:
    seed_everything(f"block-masks-{name}-{block}")
    model, x = all_models()[name]
    with torch.no_grad():  # no exact zeros in the initial weights
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.add_(torch.sign(m.weight) * 1e-3)
    result = sp.magnitude_prune(model, sparsity=0.6, block=block)
    model(x)
    for layer_name, m in model.named_modules():
        if not isinstance(m, (nn.Linear, nn.Conv2d)):
            continue
        w = _matrix(m.weight)
        _check_block_pattern(w, block)
        units = math.ceil(w.shape[0] / block[0]) * math.ceil(w.shape[1] / block[1])
        pruned_units = 0
        for r in range(0, w.shape[0], block[0]):
            for c in range(0, w.shape[1], block[1]):
                pruned_units += bool((w[r : r + block[0], c : c + block[1]] == 0).all())
        assert pruned_units == min(math.floor(0.6 * units + 0.5), math.floor(0.99 * units)), layer_name
        assert result.layers[layer_name].pruned == int((w == 0).sum())


def test_blocks_ranked_by_rms_and_masks_only_grow() -> None:
    seed_everything("block-rank")
    lin = nn.Linear(6, 8, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.arange(1, 49, dtype=torch.float32).reshape(8, 6))
        lin.weight[0:4, 5] = 100.0  # the strongest 4x1 block
        lin.weight[4:8, 0] = 0.5  # the weakest one
    model = nn.Sequential(lin)
    sp.magnitude_prune(model, sparsity=1 / 12, block=(4, 1))  # 12 blocks: drop exactly one
    w = lin.weight.detach()
    assert (w[4:8, 0] == 0).all() and int((w == 0).sum()) == 4
    sp.magnitude_prune(model, sparsity=0.5, block=(4, 1))
    assert (w[4:8, 0] == 0).all()  # still masked
    assert (w[0:4, 5] == 100.0).all()  # the strongest block survives
    assert int((w == 0).sum()) == 6 * 4


def test_block_one_by_one_is_unstructured() -> None:
    seed_everything("block-1x1")
    a, x = all_models()["cnn"]
    b, _ = all_models()["cnn"]
    b.load_state_dict(a.state_dict())
    sp.magnitude_prune(a, sparsity=0.7)
    sp.magnitude_prune(b, sparsity=0.7, block=(1, 1))
    for (_, ma), (_, mb) in zip(a.named_modules(), b.named_modules()):
        if isinstance(ma, (nn.Linear, nn.Conv2d)):
            assert torch.equal(ma.weight, mb.weight)


def test_block_global_scope() -> None:
    seed_everything("block-global")
    model, x = all_models()["resnet"]
    sp.magnitude_prune(model, sparsity=0.8, scope="global", block=(4, 1))
    total = pruned = 0
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            w = _matrix(m.weight)
            _check_block_pattern(w, (4, 1))
            total += w.size
            pruned += int((w == 0).sum())
    assert 0.7 < pruned / total < 0.9


@pytest.mark.parametrize("block", [(0, 1), (4,), "4x1", (65, 1), (4, 1.5)])
def test_bad_block(block: object) -> None:
    model, _ = all_models()["mlp"]
    with pytest.raises(ValueError, match="block"):
        sp.magnitude_prune(model, sparsity=0.5, block=block)  # type: ignore[arg-type]


class _Net(nn.Module):
    """A conv stack whose layers take every runtime path: 3x3 direct (stride 1 and 2), 1x1
    pointwise, im2col (5x5 stride 2, dilation 2), grouped conv, Linear at batch 1 and batched."""

    def __init__(self, c: int = 19) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, c, 3, padding=1)
        self.c2 = nn.Conv2d(c, 2 * c + 1, 3, padding=1, stride=2)
        self.c3 = nn.Conv2d(2 * c + 1, 24, 1)
        self.c4 = nn.Conv2d(24, 20, 5, padding=4, dilation=2, stride=2)
        self.c5 = nn.Conv2d(20, 16, 3, padding=1, groups=2)
        self.fc1 = nn.Linear(16, 33)
        self.fc2 = nn.Linear(33, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = torch.relu(self.c3(x))
        x = torch.relu(self.c4(x))
        x = self.c5(x).mean(dim=(2, 3))
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("threads", [1, 2])
def test_block_pruned_model_runs_on_block_kernels_and_matches_torch(tmp_path, sparsity: float, threads: int) -> None:
    seed = seed_everything(f"block-run-{sparsity}-{threads}")
    rng = np.random.default_rng(seed)
    model = _Net().eval()
    sp.magnitude_prune(model, sparsity=sparsity, block=(4, 1), max_sparsity=1.0)
    hw = int(rng.integers(9, 30))
    x = torch.randn(2, 3, hw, hw + 3)
    path = str(tmp_path / "m.spr")
    sparsert.export(model, x, path)
    m = sparsert.load(path, threads=threads)
    kernels = [row["kernel"] for row in m.summary() if row["op"] in ("Conv", "Linear")]
    if 0.5 <= sparsity < 1.0:
        assert any("4x1 blocks" in k for k in kernels), kernels
    with torch.no_grad():
        for batch in (1, 3, 0):
            xb = torch.randn(batch, 3, hw, hw + 3)
            want = model(xb).numpy()
            got = m.run(xb.numpy())
            _close(got, want)


def test_unstructured_weights_get_no_block_view(tmp_path) -> None:
    seed_everything("block-none")
    model = _Net().eval()
    sp.magnitude_prune(model, sparsity=0.9)
    x = torch.randn(1, 3, 20, 20)
    path = str(tmp_path / "m.spr")
    sparsert.export(model, x, path)
    m = sparsert.load(path, threads=1)
    assert not any("4x1 blocks" in row["kernel"] for row in m.summary())
    with torch.no_grad():
        _close(m.run(x.numpy()), model(x).numpy())


@pytest.mark.parametrize("block", [(4, 1), (8, 1), (2, 1)])
def test_blocks_of_other_shapes_still_match(tmp_path, block: tuple[int, int]) -> None:
    """8x1 blocks are two 4x1 blocks; 2x1 blocks half-fill 4x1 ones (the view is used only when
    the fill makes it pay); every case computes the same result."""
    seed_everything(f"block-shapes-{block}")
    model = nn.Sequential(nn.Linear(50, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    sp.magnitude_prune(model, sparsity=0.8, block=block)
    x = torch.randn(5, 50)
    path = str(tmp_path / "m.spr")
    sparsert.export(model, x, path)
    with torch.no_grad():
        for threads in (1, 2):
            _close(sparsert.load(path, threads=threads).run(x.numpy()), model(x).numpy())


def test_converted_block_sparse_onnx_matches_onnxruntime(tmp_path) -> None:
    """A model block-pruned in PyTorch, exported to ONNX (BatchNorm and all), converted: the
    runtime finds the blocks in the converted weights and matches onnxruntime on the same file."""
    ort = pytest.importorskip("onnxruntime")
    seed_everything("block-convert")
    model = nn.Sequential(_Net(), nn.Linear(7, 12)).eval()
    sp.magnitude_prune(model, sparsity=0.85, block=(4, 1))
    sp.remove_masks(model)
    x = torch.randn(1, 3, 24, 24)
    onnx_path = str(tmp_path / "m.onnx")
    torch.onnx.export(model, x, onnx_path, input_names=["x"], output_names=["y"], dynamo=False,
                      dynamic_axes={"x": {0: "n"}})
    spr = str(tmp_path / "m.spr")
    sparsert.convert(onnx_path, spr)
    m = sparsert.load(spr, threads=2)
    assert any("4x1 blocks" in row["kernel"] for row in m.summary())
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    for batch in (1, 2):
        xb = np.random.default_rng(batch).standard_normal((batch, 3, 24, 24)).astype(np.float32)
        _close(m.run(xb), sess.run(None, {"x": xb})[0])


def test_convert_prunes_in_blocks(tmp_path) -> None:
    """``convert(prune=...block=4x1)`` prunes 4x1 blocks; verify=True checks the result against
    the ONNX reference implementation run on the pruned weights."""
    pytest.importorskip("onnx")
    seed_everything("block-convert-prune")
    model = _Net().eval()
    x = torch.randn(1, 3, 16, 16)
    onnx_path = str(tmp_path / "m.onnx")
    torch.onnx.export(model, x, onnx_path, input_names=["x"], output_names=["y"], dynamo=False)
    spr = str(tmp_path / "m.spr")
    with pytest.warns(UserWarning, match="magnitude-pruned"):
        sparsert.convert(onnx_path, spr, prune={"method": "magnitude", "sparsity": 0.9, "block": (4, 1)},
                         verify=True)
    rows = sparsert.load(spr, threads=1).summary()
    assert any("4x1 blocks" in row["kernel"] for row in rows)


def test_block_sparse_file_is_smaller_than_unstructured(tmp_path) -> None:
    """BSR storage of a 4x1-block-pruned weight keeps one column index per block; export's
    storage="auto" picks it by itself, and every storage runs on the block kernels."""
    seed_everything("block-size")
    model = nn.Sequential(nn.Linear(512, 512)).eval()
    sp.magnitude_prune(model, sparsity=0.9, block=(4, 1))
    x = torch.randn(1, 512)
    csr, auto, bsr = (str(tmp_path / f"{k}.spr") for k in ("csr", "auto", "bsr"))
    sparsert.export(model, x, csr, storage="csr")
    sparsert.export(model, x, auto)
    sparsert.export(model, x, bsr, storage="bsr", block=(4, 1))
    assert os.path.getsize(auto) == os.path.getsize(bsr) < 0.8 * os.path.getsize(csr)
    with torch.no_grad():
        want = model(x).numpy()
    for p in (csr, auto, bsr):
        m = sparsert.load(p, threads=1)
        rows = [r for r in m.summary() if r["op"] == "Linear"]
        assert rows[0]["weight_storage"] == ("csr" if p == csr else "bsr")
        assert "4x1 blocks" in rows[0]["kernel"]
        _close(m.run(x.numpy()), want)
    # an unstructured weight stays CSR under "auto"
    model2 = nn.Sequential(nn.Linear(512, 512)).eval()
    sp.magnitude_prune(model2, sparsity=0.9)
    sparsert.export(model2, x, auto)
    assert [r["weight_storage"] for r in sparsert.load(auto).summary() if r["op"] == "Linear"] == ["csr"]


def test_export_block_arguments() -> None:
    model = nn.Sequential(nn.Linear(8, 8))
    with pytest.raises(ValueError, match="needs block"):
        sparsert.export(model, torch.randn(1, 8), "unused.spr", storage="bsr")
    with pytest.raises(ValueError, match="block"):
        sparsert.export(model, torch.randn(1, 8), "unused.spr", storage="bsr", block=(0, 1))


@pytest.mark.parametrize("kernel", [3, 1])
def test_grouped_conv_blocks_that_straddle_groups(tmp_path, kernel: int) -> None:
    """groups=3 with 6 output channels per group: the 4x1 block of rows 4-7 spans two groups
    (each group reads its own input channels), so those rows must run without the block view."""
    seed_everything(f"block-groups-{kernel}")
    model = nn.Sequential(nn.Conv2d(6, 18, kernel, padding=kernel // 2, groups=3), nn.ReLU(),
                          nn.Conv2d(18, 8, 1)).eval()
    sp.magnitude_prune(model, sparsity=0.5, block=(4, 1))
    x = torch.randn(2, 6, 11, 13)
    path = str(tmp_path / "m.spr")
    sparsert.export(model, x, path)
    with torch.no_grad():
        want = model(x).numpy()
    for threads in (1, 2):
        for path_kind in ("auto", "im2col", "direct"):
            m = sparsert.load(path, threads=threads, conv_sparse_path=path_kind)
            _close(m.run(x.numpy()), want)
