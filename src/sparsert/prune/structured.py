"""Structured pruning of Conv filters / Linear neurons by L1, L2 or first-order Taylor scores.

Pruning masks whole channels (the producer's filter and bias, the matching BatchNorm / depthwise
parameters and the consumers' input columns) so the model keeps its shapes and can still be
fine-tuned; every touched module records the removed indices.  :func:`shrink` turns those records
into a physically smaller copy.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ._masks import (
    add_structured_record,
    and_param_mask,
    get_param_mask,
    set_param_mask,
    structured_record,
)
from ._result import GroupResult, LayerResult, PruneResult
from ._select import Patterns, _as_patterns, matches_any
from .dependency import OUTPUT_REASON, PER_CHANNEL_TYPES, ChannelGroup, ChannelUnit, analyze_dependencies
from .magnitude import _global_counts, check_fraction

CRITERIA = ("l1", "l2", "taylor")


def _channel_rows(weight: torch.Tensor, indices: list[int]) -> torch.Tensor:
    return weight.detach()[indices].float().reshape(len(indices), -1)


def _norm_scores(group: ChannelGroup, modules: dict[str, nn.Module], criterion: str) -> torch.Tensor:
    """Per-unit score: sum over the unit's producers of the filter's mean |w| (L1) or RMS (L2)."""
    scores = torch.zeros(len(group.units))
    for u, unit in enumerate(group.units):
        for name, indices in unit.out.items():
            rows = _channel_rows(modules[name].weight, indices)
            if criterion == "l1":
                scores[u] += rows.abs().mean(dim=1).sum().item()
            else:
                scores[u] += rows.pow(2).mean(dim=1).sqrt().sum().item()
    return scores


def taylor_scores(
    model: nn.Module,
    producers: Iterable[str],
    loader: Iterable[Any],
    loss_fn: Callable[[torch.Tensor, Any], torch.Tensor],
    batches: int = 4,
) -> dict[str, torch.Tensor]:
    """First-order Taylor importance per output channel (Molchanov et al. 2017).

    For each batch the hook takes ``|mean over positions of activation * gradient|`` per sample and
    channel, averages over the batch, and sums over ``batches`` batches from ``loader`` (items are
    ``(inputs, targets)``; the loss is ``loss_fn(model(inputs), targets)``).  The model runs in eval
    mode so BatchNorm statistics are not changed; its gradients are cleared afterwards.
    """
    modules = dict(model.named_modules())
    names = list(producers)
    totals: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str) -> Callable[..., None]:
        def forward_hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            if not output.requires_grad:
                return
            activation = output.detach()

            def grad_hook(grad: torch.Tensor) -> None:
                product = activation * grad
                if isinstance(module, nn.Linear):
                    per_channel = product.reshape(-1, product.shape[-1]).abs().mean(dim=0)
                else:
                    per_channel = product.flatten(2).mean(dim=2).abs().mean(dim=0)
                totals[name] = totals.get(name, 0) + per_channel.double().cpu()

            output.register_hook(grad_hook)

        return forward_hook

    for name in names:
        handles.append(modules[name].register_forward_hook(make_hook(name)))
    was_training = model.training
    model.eval()
    used = 0
    try:
        for batch in loader:
            if used >= batches:
                break
            if not isinstance(batch, (list, tuple)) or len(batch) < 2:
                raise ValueError("the Taylor criterion needs a loader yielding (inputs, targets) pairs")
            inputs, targets = batch[0], batch[1]
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            used += 1
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if used == 0:
        raise ValueError("the loader given for the Taylor criterion yielded no batch")
    result = {}
    for name in names:
        module = modules[name]
        channels = module.out_features if isinstance(module, nn.Linear) else module.out_channels
        result[name] = totals.get(name, torch.zeros(channels, dtype=torch.float64)).float() / used
    return result


def _already_removed(group: ChannelGroup, modules: dict[str, nn.Module]) -> torch.Tensor:
    removed = torch.zeros(len(group.units), dtype=torch.bool)
    for u, unit in enumerate(group.units):
        for name, indices in unit.out.items():
            if set(indices) <= set(structured_record(modules[name])["out"]):
                removed[u] = True
    return removed


def _apply_removal(units: list[ChannelUnit], modules: dict[str, nn.Module]) -> None:
    out: dict[str, set[int]] = {}
    channel: dict[str, set[int]] = {}
    inputs: dict[str, set[int]] = {}
    for unit in units:
        for table, found in ((out, unit.out), (channel, unit.channel), (inputs, unit.inputs)):
            for name, indices in found.items():
                table.setdefault(name, set()).update(indices)
    for table, key in ((out, "out"), (channel, "channel"), (inputs, "in")):
        for name, index_set in table.items():
            module = modules[name]
            indices = sorted(index_set)
            for param_name in ("weight", "bias"):
                param = getattr(module, param_name, None)
                if not isinstance(param, torch.Tensor):
                    continue
                if key == "in" and param_name == "bias":
                    continue
                keep = torch.ones(param.shape, dtype=torch.bool, device=param.device)
                if key == "in":
                    keep[:, indices] = False
                else:
                    keep[indices] = False
                and_param_mask(module, param_name, keep)
            add_structured_record(module, key, indices)


def structured_prune(
    model: nn.Module,
    sparsity: float,
    example_input: Any,
    criterion: str = "l1",
    scope: str = "layer",
    include: Patterns = None,
    exclude: Patterns = None,
    max_sparsity: float = 0.99,
    loader: Iterable[Any] | None = None,
    loss_fn: Callable[[torch.Tensor, Any], torch.Tensor] | None = None,
    taylor_batches: int = 4,
    round_to: int = 1,
) -> PruneResult:
    """Masks the lowest-scoring ``sparsity`` fraction of output channels (in place).

    ``round_to``: keep a multiple of this many channels in every group larger than it (the
    count nearest the target, within the caps) -- e.g. 8 so the shrunk layers fill the dense
    kernels' row blocks (6 rows on AVX2, 8 on AVX-512 and NEON) and the 4x1 block kernels' groups
    of four output channels; 1 (default) keeps exactly ``round(sparsity * units)`` removals.

    Channels are removed per dependency group (see :func:`analyze_dependencies`); a group is
    considered when any of its producers matches ``include`` (all when ``None``) and none matches
    ``exclude``.  ``scope="layer"`` removes ``round(sparsity * units)`` units in every group;
    ``scope="global"`` ranks the units of all groups together (L1/L2 scores are per-weight means,
    Taylor scores are divided by their group's L2 norm, so layers of different size compare).  A
    group always keeps at least one unit and at most ``floor(max_sparsity * units)`` are removed.
    Channels removed by an earlier call stay removed.  Groups the analysis cannot follow are left
    unpruned and reported with ``warnings.warn``.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    sparsity = check_fraction(sparsity, "sparsity")
    max_sparsity = check_fraction(max_sparsity, "max_sparsity")
    if isinstance(round_to, bool) or not isinstance(round_to, int) or not 1 <= round_to <= 1024:
        raise ValueError(f"round_to must be an int in [1, 1024], got {round_to!r}")
    if criterion == "taylor" and (loader is None or loss_fn is None):
        raise ValueError("criterion='taylor' needs loader= and loss_fn= to accumulate activation*gradient")
    include_list = _as_patterns(include, "include")
    exclude_list = _as_patterns(exclude, "exclude")

    groups = analyze_dependencies(model, example_input)
    modules = dict(model.named_modules())
    all_producers = [p for g in groups for p in g.producers]
    for pattern in include_list + exclude_list:
        if not any(matches_any(p, [pattern]) for p in all_producers):
            raise ValueError(
                f"pattern {pattern!r} matches no Conv/Linear producer; producers: {all_producers}"
            )
    for group in groups:
        if group.blocked_by and group.blocked_by != [OUTPUT_REASON]:
            warnings.warn(
                f"sparsert.prune: output channels of {', '.join(group.producers)} left unpruned: "
                + "; ".join(group.blocked_by),
                stacklevel=2,
            )
    selected = [
        g
        for g in groups
        if g.prunable
        and (not include_list or any(matches_any(p, include_list) for p in g.producers))
        and not any(matches_any(p, exclude_list) for p in g.producers)
    ]

    result = PruneResult(method=f"structured-{criterion}", scope=scope, target_sparsity=sparsity)
    if selected:
        if criterion == "taylor":
            assert loader is not None and loss_fn is not None
            per_channel = taylor_scores(
                model, [p for g in selected for p in g.producers], loader, loss_fn, taylor_batches
            )
            scores = []
            for g in selected:
                s = torch.zeros(len(g.units))
                for u, unit in enumerate(g.units):
                    for name, indices in unit.out.items():
                        s[u] += per_channel[name][indices].sum()
                if scope == "global":
                    s = s / (s.norm() + 1e-12)
                scores.append(s)
        else:
            scores = [_norm_scores(g, modules, criterion) for g in selected]
        removed_before = [_already_removed(g, modules) for g in selected]
        scores = [torch.where(r, torch.full_like(s, -1.0), s) for s, r in zip(scores, removed_before)]
        bounds = []
        for g, r in zip(selected, removed_before):
            n = len(g.units)
            high = min(math.floor(max_sparsity * n + 1e-9), n - 1)
            bounds.append((min(int(r.sum()), high), max(high, int(r.sum()))))
        if scope == "layer":
            counts = []
            for g, (low, high) in zip(selected, bounds):
                wanted = int(math.floor(sparsity * len(g.units) + 0.5))
                counts.append(min(max(wanted, low), high))
        else:
            total = sum(len(g.units) for g in selected)
            counts = _global_counts(scores, int(math.floor(sparsity * total + 0.5)), bounds)
        counts = _round_kept(counts, [len(g.units) for g in selected], bounds, round_to)
        for g, s, count in zip(selected, scores, counts):
            order = torch.argsort(s, stable=True)[:count].tolist()
            _apply_removal([g.units[i] for i in order], modules)

    for g in groups:
        removed = _already_removed(g, modules)
        result.groups.append(
            GroupResult(
                producers=list(g.producers),
                size=len(g.units),
                removed=[i for i in range(len(g.units)) if removed[i]],
                blocked_by=list(g.blocked_by),
            )
        )
    touched = {name for g in selected for unit in g.units for name in (*unit.out, *unit.inputs)}
    for name, module in model.named_modules():
        if name in touched:
            mask = get_param_mask(module, "weight")
            pruned = int((~mask).sum()) if mask is not None else 0
            result.layers[name] = LayerResult(
                name, module.weight.numel(), pruned, structured_record(module)["out"]
            )
    return result


def _round_kept(counts: list[int], sizes: list[int], bounds: list[tuple[int, int]], round_to: int) -> list[int]:
    """Removal counts moved so that each group keeps a multiple of ``round_to`` units (the nearest
    to the wanted count that the [low, high] removal caps allow); groups of at most ``round_to``
    units, or with no such multiple inside the caps, keep their count."""
    if round_to <= 1:
        return counts
    out = []
    for count, n, (low, high) in zip(counts, sizes, bounds):
        kept = n - count
        options = [k for k in range(round_to, n + 1, round_to) if low <= n - k <= high]
        out.append(n - min(options, key=lambda k: (abs(k - kept), -k)) if n > round_to and options else count)
    return out


# --- physical shrinking ---------------------------------------------------------------------------


def _keep(size: int, removed: list[int]) -> list[int]:
    gone = set(removed)
    return [i for i in range(size) if i not in gone]


def _copy_masks(old: nn.Module, new: nn.Module, index: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Carries the (sliced) weight mask over; bias masks only hold structured zeros, which are gone."""
    mask = get_param_mask(old, "weight")
    if mask is not None:
        cut = index(mask)
        if not bool(cut.all()):
            set_param_mask(new, "weight", cut)


def _shrink_module(module: nn.Module, record: dict[str, list[int]]) -> nn.Module:
    factory = (
        {"device": module.weight.device, "dtype": module.weight.dtype} if module.weight is not None else {}
    )
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        if depthwise:
            keep_out = keep_in = _keep(module.out_channels, record["channel"])
            groups = len(keep_out)
            weight = module.weight.detach()[keep_out]
        else:
            keep_out = _keep(module.out_channels, record["out"])
            keep_in = _keep(module.in_channels, record["in"])
            groups = 1
            weight = module.weight.detach()[keep_out][:, keep_in]
        new = type(module)(
            len(keep_in), len(keep_out), module.kernel_size, module.stride, module.padding, module.dilation,
            groups, module.bias is not None, module.padding_mode, **factory,
        )  # fmt: skip
        with torch.no_grad():
            new.weight.copy_(weight)
            if module.bias is not None:
                new.bias.copy_(module.bias.detach()[keep_out])
        if depthwise:
            _copy_masks(module, new, lambda m: m[keep_out])
        else:
            _copy_masks(module, new, lambda m: m[keep_out][:, keep_in])
    elif isinstance(module, nn.Linear):
        keep_out = _keep(module.out_features, record["out"])
        keep_in = _keep(module.in_features, record["in"])
        new = nn.Linear(len(keep_in), len(keep_out), module.bias is not None, **factory)
        with torch.no_grad():
            new.weight.copy_(module.weight.detach()[keep_out][:, keep_in])
            if module.bias is not None:
                new.bias.copy_(module.bias.detach()[keep_out])
        _copy_masks(module, new, lambda m: m[keep_out][:, keep_in])
    elif isinstance(module, PER_CHANNEL_TYPES):
        keep = _keep(module.num_features, record["channel"])
        new = type(module)(
            len(keep), module.eps, module.momentum, module.affine, module.track_running_stats,
            device=module.running_mean.device if module.running_mean is not None else None,
        )  # fmt: skip
        with torch.no_grad():
            if module.affine:
                new.weight.copy_(module.weight.detach()[keep])
                new.bias.copy_(module.bias.detach()[keep])
            if module.track_running_stats:
                new.running_mean.copy_(module.running_mean[keep])
                new.running_var.copy_(module.running_var[keep])
                new.num_batches_tracked.copy_(module.num_batches_tracked)
    else:
        raise TypeError(f"cannot shrink a {type(module).__name__}")
    new.train(module.training)
    return new


def shrink(model: nn.Module, example_input: Any = None) -> nn.Module:
    """A physically smaller copy of a structured-pruned ``model`` (``model`` is not changed).

    Every Conv/Linear/BatchNorm with removed channels is replaced by a smaller module holding only
    the kept channels; remaining unstructured masks are carried over (sliced).  With
    ``example_input`` the copy is run once (eval mode, no grad) and its output shape checked against
    the original's.  Works as long as ``forward`` takes channel counts from tensors, not literals.
    """
    new_model = copy.deepcopy(model)
    replacements = []
    for name, module in new_model.named_modules():
        record = structured_record(module)
        if any(record.values()):
            replacements.append((name, _shrink_module(module, record)))
    for name, replacement in replacements:
        parent_name, _, child = name.rpartition(".")
        parent = new_model.get_submodule(parent_name) if parent_name else new_model
        setattr(parent, child, replacement)
    if example_input is not None:
        inputs = example_input if isinstance(example_input, tuple) else (example_input,)
        modes = (model.training, new_model.training)
        model.eval()
        new_model.eval()
        try:
            with torch.no_grad():
                expected = model(*inputs)
                got = new_model(*inputs)
        finally:
            model.train(modes[0])
            new_model.train(modes[1])
        if (
            isinstance(expected, torch.Tensor)
            and isinstance(got, torch.Tensor)
            and expected.shape != got.shape
        ):
            raise RuntimeError(
                f"shrink: the shrunk model returns shape {tuple(got.shape)} instead of "
                f"{tuple(expected.shape)}; does forward() use fixed channel counts?"
            )
    return new_model
