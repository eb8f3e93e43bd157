"""Structured pruning: whole filters, coupled groups, shrink() equivalence, unknown ops."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from test_prune_models import MODEL_FACTORIES, UnknownOpNet, ViewNet, all_models, seed_everything
from torch import nn

import sparsert.prune as sp


def _prune(model: nn.Module, x: torch.Tensor, criterion: str, sparsity: float = 0.5) -> sp.PruneResult:
    kwargs = {}
    if criterion == "taylor":
        target = model(x).detach()
        labels = target.argmax(dim=-1)
        kwargs = {"loader": [(x, labels), (x * 0.5, labels)], "loss_fn": F.cross_entropy}
    return sp.structured_prune(model, sparsity, x, criterion=criterion, **kwargs)


def _zero_rows(weight: torch.Tensor) -> set[int]:
    return {i for i in range(weight.shape[0]) if bool((weight[i] == 0).all())}


@pytest.mark.parametrize("name", list(MODEL_FACTORIES))
@pytest.mark.parametrize("criterion", ["l1", "l2", "taylor"])
def test_filters_zeroed_and_shrink_matches(name: str, criterion: str) -> None:
    seed_everything(f"structured-{name}-{criterion}")
    model, x = all_models()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these models has anything the analysis cannot follow
        result = _prune(model, x, criterion)
    info = sp.pruning_info(model)
    modules = dict(model.named_modules())
    for group in result.groups:
        if group.blocked_by:
            assert group.removed == [] and group.blocked_by == ["feeds the model output"]
            continue
        assert len(group.removed) == int(group.size * 0.5 + 0.5)
        for producer in group.producers:
            module = modules[producer]
            # Whole filters (weight rows + bias) are zero, and they are exactly the recorded ones.
            assert _zero_rows(module.weight.detach()) == set(group.removed), producer
            if module.bias is not None:
                assert set(torch.nonzero(module.bias == 0).flatten().tolist()) == set(group.removed)
            assert info[producer]["removed_out_channels"] == group.removed
            assert info[producer]["kind"] == "structured"
    model.eval()
    expected = model(x)
    small = sp.shrink(model, x)
    small.eval()
    torch.testing.assert_close(small(x), expected, atol=1e-5, rtol=1e-5)
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in small.parameters())
    print(f"{name}/{criterion}: parameters {before} -> {after}")
    assert after < before


def test_residual_adds_share_channels() -> None:
    seed_everything("residual")
    model, x = all_models()["resnet"]
    result = sp.structured_prune(model, 0.5, x, criterion="l2")
    producers = {tuple(g.producers): g for g in result.groups}
    trunk = producers[("stem", "b1_conv2", "b2_conv2")]
    assert len(trunk.removed) == 4
    for conv, bn in (("stem", "stem_bn"), ("b1_conv2", "b1_bn2"), ("b2_conv2", "b2_bn2")):
        assert _zero_rows(getattr(model, conv).weight.detach()) == set(trunk.removed)
        assert set(torch.nonzero(getattr(model, bn).weight == 0).flatten().tolist()) == set(trunk.removed)
    # Consumers of the trunk lose the same input channels.
    for consumer in ("b1_conv1", "b2_conv1", "b3_conv1", "b3_proj"):
        assert sp.pruning_info(model)[consumer]["removed_in_channels"] == trunk.removed
    assert ("b3_conv2", "b3_proj") in producers  # the projection shortcut couples with its block
    small = sp.shrink(model, x)
    assert small.b1_conv2.weight.shape[0] == 4 and small.b3_proj.weight.shape[1] == 4


def test_concat_offsets() -> None:
    seed_everything("concat")
    model, x = all_models()["concat"]
    result = sp.structured_prune(model, 0.5, x, criterion="l1")
    groups = {g.producers[0]: g for g in result.groups}
    removed_a = groups["branch_a"].removed
    removed_b = groups["branch_b"].removed
    expected_in = sorted(removed_a + [6 + i for i in removed_b])  # branch_b starts at channel 6
    assert sp.pruning_info(model)["merge"]["removed_in_channels"] == expected_in
    merge_weight = model.merge.weight.detach()
    assert {i for i in range(16) if bool((merge_weight[:, i] == 0).all())} >= set(expected_in)
    small = sp.shrink(model, x)
    assert small.merge.in_channels == 16 - len(expected_in)
    model.eval()
    small.eval()
    torch.testing.assert_close(small(x), model(x), atol=1e-5, rtol=1e-5)


def test_depthwise_coupled() -> None:
    seed_everything("depthwise")
    model, x = all_models()["mobilenet"]
    result = sp.structured_prune(model, 0.5, x, criterion="l1")
    group = next(g for g in result.groups if g.producers == ["block1.expand"])
    assert len(group.removed) == 12
    info = sp.pruning_info(model)
    for name in ("block1.expand_bn", "block1.depthwise", "block1.depthwise_bn"):
        assert info[name]["removed_out_channels"] == group.removed, name
    assert info["block1.project"]["removed_in_channels"] == group.removed
    assert _zero_rows(model.block1.depthwise.weight.detach()) == set(group.removed)
    small = sp.shrink(model, x)
    assert small.block1.depthwise.groups == 12 and small.block1.depthwise.weight.shape == (12, 1, 3, 3)


def test_flatten_blocks_and_view() -> None:
    seed_everything("flatten")
    model, x = all_models()["flatten"]
    result = sp.structured_prune(model, 0.4, x, criterion="l1")
    removed = next(g for g in result.groups if g.producers == ["conv2"]).removed
    assert len(removed) == 2
    expected = sorted(c * 16 + j for c in removed for j in range(16))  # H*W = 4*4 per channel
    assert sp.pruning_info(model)["fc1"]["removed_in_channels"] == expected
    small = sp.shrink(model, x)
    assert small.fc1.in_features == 3 * 16
    view_model = ViewNet()
    xv = torch.randn(2, 2, 5, 5)
    sp.structured_prune(view_model, 0.5, xv)
    assert len(sp.pruning_info(view_model)["fc"]["removed_in_channels"]) == 2 * 25
    torch.testing.assert_close(sp.shrink(view_model, xv)(xv), view_model(xv), atol=1e-5, rtol=1e-5)


def test_unknown_op_warns_and_leaves_group() -> None:
    seed_everything("unknown")
    model, x = UnknownOpNet(), torch.randn(2, 3, 6, 6)
    with pytest.warns(UserWarning, match=r"conv_a left unpruned: unsupported op roll"):
        result = sp.structured_prune(model, 0.5, x)
    groups = {g.producers[0]: g for g in result.groups}
    assert groups["conv_a"].removed == [] and _zero_rows(model.conv_a.weight.detach()) == set()
    assert len(groups["conv_b"].removed) == 3  # the rest of the model is still pruned
    torch.testing.assert_close(sp.shrink(model, x)(x), model(x), atol=1e-5, rtol=1e-5)


class _FixedReshape(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).view(-1, 64))


class _Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv2(self.conv1(x)).mean(dim=(2, 3)))


class _InputShortcut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.conv(x) + x, 1).sum(dim=1, keepdim=True)


@pytest.mark.parametrize(
    "model, x, pattern",
    [
        (_FixedReshape(), torch.randn(2, 1, 4, 4), "conv left unpruned: reshape with a fixed channel size"),
        (
            _Grouped(),
            torch.randn(2, 3, 4, 4),
            r"conv1 left unpruned: grouped convolution 'conv2' \(groups=2\)",
        ),
        (_InputShortcut(), torch.randn(2, 3, 4, 4), "conv left unpruned: add .* does not track"),
    ],
)
def test_not_understood_is_left_unpruned(model: nn.Module, x: torch.Tensor, pattern: str) -> None:
    seed_everything("not-understood")
    expected = model(x)
    with pytest.warns(UserWarning, match=pattern):
        sp.structured_prune(model, 0.5, x)
    torch.testing.assert_close(sp.shrink(model, x)(x), model(x))
    if not isinstance(model, _Grouped):
        torch.testing.assert_close(model(x), expected)  # nothing was pruned


def test_iterative_structured_keeps_removed_and_caps() -> None:
    seed_everything("iterative-structured")
    model, x = all_models()["cnn"]
    first = sp.structured_prune(model, 0.25, x, criterion="l1")
    removed_first = {tuple(g.producers): set(g.removed) for g in first.groups}
    second = sp.structured_prune(model, 1.0, x, criterion="l2", scope="global")
    for group in second.groups:
        assert removed_first[tuple(group.producers)] <= set(group.removed)
        if not group.blocked_by:
            assert len(group.removed) == group.size - 1  # max_sparsity keeps one channel alive


def test_global_structured_and_include() -> None:
    seed_everything("global-structured")
    model, x = all_models()["resnet"]
    result = sp.structured_prune(model, 0.5, x, scope="global", include="b3_*")
    pruned = [g.producers for g in result.groups if g.removed]
    assert pruned and all(any(p.startswith("b3_") for p in producers) for producers in pruned)
    total = sum(
        g.size for g in result.groups if not g.blocked_by and any(p.startswith("b3_") for p in g.producers)
    )
    assert sum(len(g.removed) for g in result.groups) == int(0.5 * total + 0.5)
    with pytest.raises(ValueError, match="matches no Conv/Linear producer"):
        sp.structured_prune(model, 0.5, x, include="nothing*")
    with pytest.raises(ValueError, match="needs loader"):
        sp.structured_prune(model, 0.5, x, criterion="taylor")
    with pytest.raises(ValueError, match="criterion"):
        sp.structured_prune(model, 0.5, x, criterion="l3")


def test_untraceable_model_clear_error() -> None:
    class Dynamic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(RuntimeError, match="torch.fx could not trace Dynamic"):
        sp.structured_prune(Dynamic(), 0.5, torch.randn(2, 3))


@pytest.mark.parametrize("round_to", [4, 8])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_round_to_keeps_multiples(round_to: int, scope: str) -> None:
    seed_everything(f"structured-round-{round_to}-{scope}")

    class Wide(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 30, 3, padding=1)
            self.c2 = nn.Conv2d(30, 21, 3, padding=1)
            self.c3 = nn.Conv2d(21, 6, 1)  # 6 <= 8: left at its exact count for round_to=8
            self.fc = nn.Linear(6, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.c3(F.relu(self.c2(F.relu(self.c1(x))))))
            return self.fc(x.mean(dim=(2, 3)))

    model, x = Wide().eval(), torch.randn(2, 3, 8, 8)
    result = sp.structured_prune(model, 0.4, x, scope=scope, round_to=round_to)
    for group in result.groups:
        if group.blocked_by:
            continue
        kept = group.size - len(group.removed)
        if group.size > round_to:
            assert kept % round_to == 0 and kept >= round_to, (group.producers, kept)
        if scope == "layer":  # the multiple nearest the exact count
            exact = group.size - int(group.size * 0.4 + 0.5)
            assert abs(kept - exact) <= round_to // 2 or group.size <= round_to
    small = sp.shrink(model, x)
    torch.testing.assert_close(small(x), model(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="round_to"):
        sp.structured_prune(Wide(), 0.4, x, round_to=0)
