"""Unstructured magnitude pruning: exact per-layer counts, global threshold, caps, selection."""

from __future__ import annotations

import math

import pytest
import torch
from test_prune_models import all_models, seed_everything
from torch import nn

import sparsert.prune as sp

MODEL_NAMES = ["mlp", "cnn", "resnet", "mobilenet", "concat", "flatten"]


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("sparsity", [0.0, 0.37, 0.9])
def test_layer_scope_exact_counts(name: str, sparsity: float) -> None:
    seed_everything(f"layer-{name}-{sparsity}")
    model, x = all_models()[name]
    before = {n: m.weight.detach().clone() for n, m in _layers(model).items()}
    result = sp.magnitude_prune(model, sparsity=sparsity, scope="layer")
    model(x)  # masks stay applied through a forward
    for layer_name, module in _layers(model).items():
        n = module.weight.numel()
        expected = min(math.floor(sparsity * n + 0.5), math.floor(0.99 * n))
        assert int((module.weight == 0).sum()) == expected, layer_name
        assert result.layers[layer_name].pruned == expected
        # The pruned ones are the smallest |w| of this layer.
        w = before[layer_name].abs().flatten()
        pruned = module.weight.detach().flatten() == 0
        if 0 < expected < n:
            assert w[pruned].max() <= w[~pruned].min()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_global_scope_threshold(name: str) -> None:
    seed_everything(f"global-{name}")
    model, _ = all_models()[name]
    layers = _layers(model)
    before = torch.cat([m.weight.detach().abs().flatten() for m in layers.values()])
    result = sp.magnitude_prune(model, sparsity=0.6, scope="global", max_sparsity=1.0)
    after = torch.cat([m.weight.detach().flatten() for m in layers.values()])
    pruned = after == 0
    assert int(pruned.sum()) == math.floor(0.6 * before.numel() + 0.5)
    assert before[pruned].max() <= before[~pruned].min()  # one threshold across all layers
    assert result.sparsity == pytest.approx(0.6, abs=1.0 / before.numel())
    per_layer = [r.sparsity for r in result.layers.values()]
    assert max(per_layer) - min(per_layer) > 0.01  # global really differs from per-layer


def test_global_caps_respected() -> None:
    seed_everything("caps")
    model, _ = all_models()["mlp"]
    with torch.no_grad():
        model.fc1.weight.mul_(0.01)  # fc1 would be pruned almost entirely by a global threshold
        model.fc3.weight.mul_(100.0)  # fc3 would stay nearly dense
    result = sp.magnitude_prune(model, 0.5, scope="global", min_sparsity=0.2, max_sparsity=0.8)
    for layer in result.layers.values():
        low = math.ceil(0.2 * layer.numel - 1e-9)
        high = math.floor(0.8 * layer.numel + 1e-9)
        assert low <= layer.pruned <= high, layer.name
    assert result.layers["fc1"].pruned == 332  # floor(0.8 * 416)
    assert result.layers["fc3"].pruned == 24  # ceil(0.2 * 120)
    total = sum(layer.numel for layer in result.layers.values())
    assert sum(layer.pruned for layer in result.layers.values()) == math.floor(0.5 * total + 0.5)
    # The uncapped layer follows the remaining threshold: fc2 is the only free one.
    assert result.layers["fc2"].pruned == math.floor(0.5 * total + 0.5) - 332 - 24


def test_layer_caps_and_full_sparsity() -> None:
    seed_everything("full")
    model, _ = all_models()["mlp"]
    result = sp.magnitude_prune(model, 1.0)
    assert all(layer.pruned == math.floor(0.99 * layer.numel) for layer in result.layers.values())
    model, x = all_models()["mlp"]
    sp.magnitude_prune(model, 1.0, max_sparsity=1.0)
    assert all(int((m.weight != 0).sum()) == 0 for m in _layers(model).values())
    assert torch.allclose(model(x), model.fc3.bias.expand(x.shape[0], -1))
    model, _ = all_models()["mlp"]
    result = sp.magnitude_prune(model, 0.1, min_sparsity=0.3)
    assert all(layer.pruned == math.ceil(0.3 * layer.numel) for layer in result.layers.values())


def test_excludes_and_types() -> None:
    seed_everything("select")
    model, _ = all_models()["resnet"]
    result = sp.magnitude_prune(model, 0.5, exclude_first=True, exclude_last=True)
    assert "stem" not in result.layers and "fc" not in result.layers
    assert int((model.stem.weight == 0).sum()) == 0 and int((model.fc.weight == 0).sum()) == 0
    model, _ = all_models()["resnet"]
    result = sp.magnitude_prune(model, 0.5, include="b*_conv*", exclude=["b3_*"])
    assert sorted(result.layers) == ["b1_conv1", "b1_conv2", "b2_conv1", "b2_conv2"]
    model, _ = all_models()["resnet"]
    result = sp.magnitude_prune(model, 0.5, types=(nn.Linear,))
    assert list(result.layers) == ["fc"]
    assert sp.first_layer_name(model) == "stem" and sp.last_layer_name(model) == "fc"
    model, _ = all_models()["mlp"]
    result = sp.magnitude_prune(model, {"fc1": 0.5, "fc*": 0.25})
    assert result.layers["fc1"].pruned == 208 and result.layers["fc2"].pruned == 192


def test_masks_only_grow() -> None:
    seed_everything("grow")
    model, _ = all_models()["cnn"]
    sp.magnitude_prune(model, 0.7)
    first = sp.get_masks(model)
    sp.magnitude_prune(model, 0.3)
    for key, mask in sp.get_masks(model).items():
        assert torch.equal(mask, first[key])
    sp.magnitude_prune(model, 0.8)
    for key, mask in sp.get_masks(model).items():
        assert bool((mask <= first[key]).all())  # kept-set shrinks, never regrows


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sparsity": 1.5}, "sparsity"),
        ({"sparsity": -0.1}, "sparsity"),
        ({"scope": "model"}, "scope"),
        ({"include": "nope*"}, "matches no layer"),
        ({"min_sparsity": 0.9, "max_sparsity": 0.5}, "larger than max_sparsity"),
        ({"types": (nn.LSTM,)}, "no layer selected"),
        ({"sparsity": {"fc*": 0.5}, "scope": "global"}, "scope='layer'"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    model, _ = all_models()["mlp"]
    with pytest.raises(ValueError, match=message):
        sp.magnitude_prune(model, **kwargs)
