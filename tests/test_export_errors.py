"""sparsert.export refuses what it cannot do, clearly, and never leaves a half-written file."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sparsert  # noqa: E402
from sparsert.exporter import ExportResult, UnsupportedOpError  # noqa: E402


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(6, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, 1, dims=1)


class Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Inner()
        self.gn = nn.GroupNorm(2, 6)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, 6, 6]
        # four independent problems (a node reading an unsupported one is not reported again)
        rolled = self.inner(x)
        sliced = x[:, :3]
        normed = self.gn(x)
        total = self.fc(x).sum()
        return rolled.mean() + sliced.mean() + normed.mean() + total


def test_all_unsupported_ops_listed_at_once(tmp_path) -> None:
    with pytest.raises(UnsupportedOpError) as info:
        sparsert.export(Unsupported(), torch.randn(2, 6, 6), str(tmp_path / "u.spr"))
    message = str(info.value)
    print(message)
    assert "Unsupported" in message and "4 unsupported operations" in message
    assert "torch.roll" in message and "in module 'inner'" in message
    assert "getitem" in message and "slicing" in message
    assert "GroupNorm" in message and "module 'gn'" in message
    assert "Tensor.sum" in message or "torch.sum" in message
    assert not (tmp_path / "u.spr").exists()
    assert isinstance(info.value, sparsert.UnsupportedError)


def test_unsupported_leaf_module_named(tmp_path) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.PReLU())
    with pytest.raises(
        UnsupportedOpError, match=r"node '_1' \(module '1'\).*torch\.nn\.modules\.activation\.PReLU"
    ):
        sparsert.export(model, torch.randn(1, 4), str(tmp_path / "p.spr"))


def test_untraceable_forward(tmp_path) -> None:
    class DataDependent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(UnsupportedOpError, match="torch.fx.symbolic_trace failed"):
        sparsert.export(DataDependent(), torch.randn(1, 4), str(tmp_path / "d.spr"))


def test_unsupported_module_options(tmp_path) -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.MaxPool2d(2, return_indices=False)
    )
    with pytest.raises(UnsupportedOpError, match="padding_mode='reflect'"):
        sparsert.export(model, torch.randn(1, 3, 8, 8), str(tmp_path / "r.spr"))
    bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(UnsupportedOpError, match="track_running_stats=False"):
        sparsert.export(bn, torch.randn(3, 4), str(tmp_path / "b.spr"))


def test_bad_arguments(tmp_path) -> None:
    model, x, path = Tiny(), torch.randn(2, 4), str(tmp_path / "t.spr")
    with pytest.raises(ValueError, match="storage must be one of"):
        sparsert.export(model, x, path, storage="sparse")
    with pytest.raises(ValueError, match="float32"):
        sparsert.export(model, x.double(), path)
    with pytest.raises(TypeError, match="torch.Tensor"):
        sparsert.export(model, x.numpy(), path)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        sparsert.export(lambda t: t, x, path)
    with pytest.raises(ValueError, match="rtol"):
        sparsert.export(model, x, path, rtol=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sparsert.export(model, x, str(tmp_path / "missing" / "t.spr"))
    assert not os.path.exists(path)


def test_result_fields_and_training_mode_restored(tmp_path) -> None:
    model = Tiny().train()
    path = tmp_path / "t.spr"
    result = sparsert.export(model, torch.randn(2, 4), path, threads=2)
    assert isinstance(result, ExportResult)
    assert model.training
    assert result.path == str(path) and result.file_size == path.stat().st_size
    assert result.n_dense == 1 and result.n_csr == 0 and result.shrunk_layers == {}
    assert result.max_abs_error <= 1e-5 and "Tiny" in result.summary
    # the package stays callable after `import sparsert.export`
    assert isinstance(sparsert.export(Tiny(), torch.randn(1, 4), path, threads=2), ExportResult)


def test_verify_failure_writes_nothing(tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.GELU(), nn.Conv2d(16, 8, 3), nn.Softmax(1))
    x = torch.randn(2, 3, 12, 12)
    path = tmp_path / "v.spr"
    result = sparsert.export(model, x, path, threads=2)
    assert result.max_rel_error > 0  # float32 sums in another order: not bit-exact
    before = path.read_bytes()
    with pytest.raises(ValueError, match="failed verification.*not written"):
        sparsert.export(model, x, path, verify=True, rtol=1e-12, threads=2)
    assert path.read_bytes() == before


def test_atomic_write_keeps_existing_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "a.spr"
    sparsert.export(Tiny(), torch.randn(1, 4), path, threads=2)
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="simulated"):
        sparsert.export(nn.Sequential(nn.Linear(4, 7)), torch.randn(1, 4), path, threads=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.spr"]  # no temp file left behind
    assert sparsert.load(path, threads=2).outputs[0].shape == (-1, 3)


class Chained(nn.Module):
    """Unsupported modules one after another: each reads the previous one's output."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 4)
        self.enc = nn.TransformerEncoderLayer(4, 1, 8)
        self.rnn = nn.RNN(4, 4)
        self.gn = nn.GroupNorm(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.enc(self.gru(x)[0])
        return self.gn(self.rnn(y)[0].permute(1, 2, 0))


def test_chained_unsupported_modules_all_listed_with_what_to_do(tmp_path) -> None:
    with pytest.raises(UnsupportedOpError) as info:
        sparsert.export(Chained(), torch.randn(3, 2, 4), str(tmp_path / "c.spr"))
    message = str(info.value)
    print(message)
    assert "4 unsupported operations" in message
    for module, kind in (("gru", "GRU"), ("enc", "TransformerEncoderLayer"), ("rnn", "RNN"), ("gn", "GroupNorm")):
        assert f"(module '{module}')" in message and kind in message
    assert message.count("sparsert.convert") == 2  # GRU and the encoder layer convert from ONNX
    assert "control flow" not in message


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: nn.GRU(4, 8, batch_first=True), "LSTM and GRU"),
        (lambda: nn.LSTM(4, 8), "LSTM and GRU"),
        (lambda: nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), "transformer encoders"),
        (lambda: nn.MultiheadAttention(16, 2), "attention"),
        (lambda: torch.jit.script(nn.Sequential(nn.Linear(4, 4))), "TorchScript"),
    ],
    ids=["GRU", "LSTM", "TransformerEncoderLayer", "MultiheadAttention", "ScriptModule"],
)
def test_top_level_modules_fx_cannot_trace_say_what_to_do(tmp_path, make, expected) -> None:
    with pytest.raises(UnsupportedOpError) as info:
        sparsert.export(make(), torch.randn(1, 3, 4), str(tmp_path / "t.spr"))
    message = str(info.value)
    assert expected in message and "sparsert.convert" in message
    assert "control flow" not in message
    assert not (tmp_path / "t.spr").exists()
