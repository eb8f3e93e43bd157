"""Masks through training and serialization; schedules; iterative loop; report; sensitivity."""

from __future__ import annotations

import copy
import io
import json
import pickle

import pytest
import torch
import torch.nn.functional as F
from test_prune_models import all_models, seed_everything
from torch import nn

import sparsert.prune as sp


def _train_steps(model: nn.Module, x: torch.Tensor, optimizer: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
        lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=1e-2),
        lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=1e-1),
    ],
)
def test_masks_stay_zero_through_optimizer_steps(make_optimizer) -> None:  # noqa: ANN001
    seed_everything("optimizer")
    model, x = all_models()["resnet"]
    model.train()
    optimizer = make_optimizer(model.parameters())
    _train_steps(model, x, optimizer, 3)  # momentum / Adam state exists before pruning
    sp.magnitude_prune(model, 0.6)
    sp.structured_prune(model, 0.3, x)
    masks = sp.get_masks(model)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _train_steps(model, x, optimizer, 4)
    params = dict(model.named_parameters())
    for key, mask in masks.items():
        assert bool((params[key].detach()[~mask] == 0).all()), key  # exact zeros right after step()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # it did train


def test_deepcopy_pickle_state_dict_round_trip(tmp_path) -> None:  # noqa: ANN001
    seed_everything("serialize")
    model, x = all_models()["mobilenet"]
    keys = list(model.state_dict())
    sp.magnitude_prune(model, 0.5)
    sp.structured_prune(model, 0.5, x)
    assert list(model.state_dict()) == keys  # no weight_orig / weight_mask
    expected = model(x)
    masks = sp.get_masks(model)
    info = sp.pruning_info(model)
    copies = [copy.deepcopy(model), pickle.loads(pickle.dumps(model))]
    path = tmp_path / "model.pt"
    torch.save(model, path)
    copies.append(torch.load(path, weights_only=False))
    for clone in copies:
        torch.testing.assert_close(clone(x), expected)
        assert sp.pruning_info(clone) == info
        got = sp.get_masks(clone)
        assert got.keys() == masks.keys() and all(torch.equal(got[k], masks[k]) for k in masks)
        opt = torch.optim.Adam(clone.parameters(), lr=0.1)
        clone.train()
        _train_steps(clone, x, opt, 2)  # masks of the copy are enforced too
        params = dict(clone.named_parameters())
        assert all(bool((params[k].detach()[~m] == 0).all()) for k, m in masks.items())
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh, _ = all_models()["mobilenet"]
    fresh.load_state_dict(torch.load(buffer))
    fresh.eval()
    torch.testing.assert_close(fresh(x), expected)
    sp.apply_masks(fresh, masks)
    assert all(torch.equal(sp.get_masks(fresh)[k], masks[k]) for k in masks)


def test_remove_masks_bakes_zeros() -> None:
    seed_everything("finalize")
    model, x = all_models()["cnn"]
    sp.magnitude_prune(model, 0.8)
    zeros = int((model.conv2.weight == 0).sum())
    sp.finalize(model)
    assert sp.get_masks(model) == {} and not model.conv2._forward_pre_hooks
    assert int((model.conv2.weight == 0).sum()) == zeros
    assert all(v["kind"] == "none" or v["sparsity"] == 0.0 for v in sp.pruning_info(model).values())
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    _train_steps(model, x, opt, 1)
    assert int((model.conv2.weight == 0).sum()) < zeros  # free to change again


def test_pruning_info_format() -> None:
    seed_everything("info")
    model, x = all_models()["cnn"]
    sp.structured_prune(model, 0.5, x, include="conv2")
    sp.magnitude_prune(model, 0.5, include="fc")
    info = sp.pruning_info(model)
    assert set(info) == {"conv1", "bn1", "conv2", "bn2", "fc"}
    assert info["conv1"] == {
        "kind": "none",
        "sparsity": 0.0,
        "removed_out_channels": [],
        "removed_in_channels": [],
        "sparsity_after_shrink": 0.0,
    }
    assert info["conv2"]["kind"] == "structured" and len(info["conv2"]["removed_out_channels"]) == 6
    assert info["conv2"]["sparsity"] == pytest.approx(0.5) and info["conv2"]["sparsity_after_shrink"] == 0.0
    assert info["bn2"]["removed_out_channels"] == info["conv2"]["removed_out_channels"]
    assert info["fc"]["kind"] == "structured"  # its inputs follow conv2
    assert info["fc"]["removed_in_channels"] == info["conv2"]["removed_out_channels"]
    json.dumps(info)


def test_schedules() -> None:
    cubic = sp.CubicSchedule(0.1, 0.9, steps=5)
    linear = sp.LinearSchedule(0.0, 0.8, steps=4)
    assert cubic(0) == pytest.approx(0.1) and cubic(5) == pytest.approx(0.9)
    assert linear(0) == 0.0 and linear(4) == pytest.approx(0.8) and linear(1) == pytest.approx(0.2)
    for t in range(6):
        assert cubic(t) == pytest.approx(0.9 + (0.1 - 0.9) * (1 - t / 5) ** 3)
    values = cubic.values()
    assert len(values) == 5 and all(a < b for a, b in zip(values, values[1:]))
    steps = [b - a for a, b in zip([0.1, *values], values)]
    assert all(a > b for a, b in zip(steps, steps[1:]))  # cubic: big steps first
    with pytest.raises(ValueError, match="steps"):
        sp.LinearSchedule(0, 0.5, steps=0)
    with pytest.raises(ValueError, match="final"):
        sp.CubicSchedule(0, 1.5, steps=3)
    with pytest.raises(ValueError, match="outside"):
        cubic(6)


@pytest.mark.parametrize("method", ["magnitude", "l1"])
def test_iterative_prune_calls_fine_tune(method: str) -> None:
    seed_everything(f"iterative-{method}")
    model, x = all_models()["cnn"]
    calls: list[tuple[int, float]] = []

    def fine_tune_fn(m: nn.Module, step: int) -> None:
        weights = [mod.weight for mod in m.modules() if isinstance(mod, nn.Conv2d)]
        zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
        calls.append((step, zeros))

    kwargs = {"example_input": x} if method != "magnitude" else {}
    results = sp.iterative_prune(model, sp.LinearSchedule(0.0, 0.5, 3), fine_tune_fn, method=method, **kwargs)
    assert [c[0] for c in calls] == [1, 2, 3]
    assert all(a[1] < b[1] for a, b in zip(calls, calls[1:]))  # each step removes more
    assert len(results) == 3
    with pytest.raises(ValueError, match="example_input"):
        sp.iterative_prune(model, sp.LinearSchedule(0.0, 0.5, 3), None, method="l2")


def test_fine_tune_helper() -> None:
    seed_everything("fine-tune")
    model, x = all_models()["mlp"]
    y = torch.randint(0, 5, (4,))
    sp.magnitude_prune(model, 0.5)
    losses = sp.fine_tune(model, [(x, y)] * 20, F.cross_entropy, epochs=3, lr=1e-2, optimizer="sgd")
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert all(
        bool((p[~m] == 0).all()) for p, m in zip([model.fc1.weight], [sp.get_masks(model)["fc1.weight"]])
    )
    with pytest.raises(ValueError, match="optimizer"):
        sp.fine_tune(model, [(x, y)], F.cross_entropy, optimizer="lbfgs")


def test_report_flops() -> None:
    seed_everything("report")
    model, x = all_models()["cnn"]  # x: 2 x 3 x 8 x 8
    dense = sp.report(model, x)
    conv1 = next(layer for layer in dense.layers if layer.name == "conv1")
    assert conv1.flops_before == 2 * (2 * 8 * 8 * 8) * (3 * 3 * 3) == conv1.flops_after
    fc = next(layer for layer in dense.layers if layer.name == "fc")
    assert fc.flops_before == 2 * 2 * 12 * 4
    sp.structured_prune(model, 0.5, x)
    sp.magnitude_prune(model, 0.5, include="conv1")
    after = sp.report(model, x)
    conv1 = next(layer for layer in after.layers if layer.name == "conv1")
    nonzero = int((model.conv1.weight != 0).sum())
    assert conv1.flops_after == 2 * (2 * 8 * 8) * nonzero and conv1.shape_after == [4, 3, 3, 3]
    conv2 = next(layer for layer in after.layers if layer.name == "conv2")
    assert conv2.shape_after == [6, 4, 3, 3] and conv2.flops_after == 2 * (2 * 8 * 8) * 6 * 4 * 9
    small = sp.shrink(model, x)
    assert sp.report(small, x).flops_before == after.flops_after
    data = json.loads(after.to_json())
    assert data["total"]["flops_after"] == after.flops_after < dense.flops_before
    text = after.table()
    print(text)
    assert "conv2" in text and "total" in text


def test_sensitivity(tmp_path) -> None:  # noqa: ANN001
    seed_everything("sensitivity")
    model, x = all_models()["cnn"]
    reference = model(x).detach()
    state = copy.deepcopy(model.state_dict())

    def metric(m: nn.Module) -> float:
        with torch.no_grad():
            return -float((m(x) - reference).abs().mean())

    result = sp.sensitivity_analysis(model, metric, sparsities=(0.5, 0.9), progress=False)
    assert result.baseline == 0.0
    assert {row["layer"] for row in result.rows} == {"conv1", "conv2", "fc"}
    for name in ("conv1", "conv2", "fc"):
        rows = {row["sparsity"]: row["metric"] for row in result.rows if row["layer"] == name}
        assert rows[0.9] <= rows[0.5] < 0.0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # model untouched
    assert "conv2" in result.table()
    structured = sp.sensitivity_analysis(model, metric, (0.5,), method="l1", example_input=x, progress=False)
    assert {row["layer"] for row in structured.rows} == {"conv1", "conv2"}  # fc feeds the output
    pytest.importorskip("matplotlib")
    path = tmp_path / "sensitivity.png"
    result.plot(str(path))
    assert path.stat().st_size > 1000
