"""Unstructured magnitude pruning: zero the smallest |w| per layer or under one global threshold."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Union

import torch
from torch import nn

from ._masks import and_param_mask, get_param_mask
from ._result import LayerResult, PruneResult
from ._select import DEFAULT_TYPES, Patterns, matches_any, select_layers

SparsitySpec = Union[float, Mapping[str, float]]


def check_fraction(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def _count_bounds(numel: int, min_sparsity: float, max_sparsity: float) -> tuple[int, int]:
    low = math.ceil(min_sparsity * numel - 1e-9)
    high = math.floor(max_sparsity * numel + 1e-9)
    return max(0, min(low, numel)), max(0, min(high, numel))


def _scores(module: nn.Module, block: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """One score per pruning unit, flattened: |w| per weight, or for ``block=(bo, bi)`` the RMS
    of each block of the ``[out, in * kh * kw]`` matrix view (over its unmasked weights, so a
    partial edge block compares fairly).  Units already fully masked score -1 so they are always
    pruned first."""
    weight = module.weight.detach().float()
    mask = get_param_mask(module, "weight")
    if block == (1, 1):
        scores = weight.abs().flatten()
        if mask is not None:
            scores = torch.where(mask.flatten().to(scores.device), scores, torch.full_like(scores, -1.0))
        return scores
    live = torch.ones_like(weight) if mask is None else mask.to(weight.device).float()
    sq = _block_sums((weight * live) ** 2, block)
    count = _block_sums(live, block)
    return torch.where(count > 0, torch.sqrt(sq / count.clamp(min=1.0)), torch.full_like(sq, -1.0)).flatten()


def _block_sums(t: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Sums over the ``block`` tiles of ``t`` seen as ``[dim0, rest]`` (edge tiles partial)."""
    bo, bi = block
    m = t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(-1, 1)
    rows, cols = m.shape
    m = torch.nn.functional.pad(m, (0, -cols % bi, 0, -rows % bo))
    return m.reshape(m.shape[0] // bo, bo, m.shape[1] // bi, bi).sum(dim=(1, 3))


def _prune_smallest(module: nn.Module, scores: torch.Tensor, count: int, block: tuple[int, int] = (1, 1)) -> None:
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if count > 0:
        order = torch.argsort(scores, stable=True)
        keep[order[:count]] = False
    weight = module.weight
    if block != (1, 1):
        bo, bi = block
        rows = weight.shape[0]
        cols = weight.numel() // max(rows, 1)
        grid = keep.view(-(-rows // bo), -(-cols // bi))
        keep = grid.repeat_interleave(bo, dim=0).repeat_interleave(bi, dim=1)[:rows, :cols]
    and_param_mask(module, "weight", keep.reshape(weight.shape))


def _global_counts(scores: list[torch.Tensor], total: int, bounds: list[tuple[int, int]]) -> list[int]:
    """Per-layer prune counts under one global threshold, with per-layer [low, high] caps.

    Layers whose share under the shared threshold breaks a cap are fixed at the cap and the rest of
    the budget is re-ranked among the other layers (first all upper-cap violations, then lower).
    """
    fixed: dict[int, int] = {}
    while True:
        free = [i for i in range(len(scores)) if i not in fixed]
        if not free:
            return [fixed[i] for i in range(len(scores))]
        pool = torch.cat([scores[i] for i in free])
        remaining = max(0, min(total - sum(fixed.values()), pool.numel()))
        owner = torch.cat([torch.full((scores[i].numel(),), j, dtype=torch.long) for j, i in enumerate(free)])
        chosen = owner[torch.argsort(pool, stable=True)[:remaining]]
        counts = torch.bincount(chosen, minlength=len(free)).tolist()
        over = [(i, c) for i, c in zip(free, counts) if c > bounds[i][1]]
        under = [(i, c) for i, c in zip(free, counts) if c < bounds[i][0]]
        if over:
            for i, _ in over:
                fixed[i] = bounds[i][1]
        elif under:
            for i, _ in under:
                fixed[i] = bounds[i][0]
        else:
            for i, c in zip(free, counts):
                fixed[i] = c
            return [fixed[i] for i in range(len(scores))]


def magnitude_prune(
    model: nn.Module,
    sparsity: SparsitySpec = 0.9,
    scope: str = "layer",
    include: Patterns = None,
    exclude: Patterns = None,
    types: Sequence[type[nn.Module]] = DEFAULT_TYPES,
    min_sparsity: float = 0.0,
    max_sparsity: float = 0.99,
    exclude_first: bool = False,
    exclude_last: bool = False,
    block: tuple[int, int] = (1, 1),
) -> PruneResult:
    """Masks the smallest-magnitude weights of the selected layers (in place).

    ``block=(bo, bi)`` prunes whole blocks of ``bo`` consecutive output channels x ``bi``
    consecutive inputs of the weight seen as ``[out, in * kh * kw]`` (the matrix ``.spr`` stores),
    ranked by the RMS of their weights; sparsities then count blocks.  ``(4, 1)`` -- four output
    channels sharing one input position -- is the pattern sparsert's block kernels run about twice
    as fast as the same sparsity unstructured (docs/pruning.md); ``(1, 1)`` is unstructured.

    ``scope="layer"``: each layer loses exactly ``round(sparsity * numel)`` weights (clamped to
    ``[min_sparsity, max_sparsity]``).  ``sparsity`` may also be a mapping from layer-name globs to
    per-layer sparsities (first matching pattern wins; unmatched layers are left alone).
    ``scope="global"``: one magnitude threshold across all selected layers removes
    ``round(sparsity * total)`` weights; layers whose share would break the caps are held at the cap
    and the remainder is re-ranked among the others.  Masks only grow: weights masked by an earlier
    call stay masked.  Only ``weight`` is pruned, never the bias.
    """
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    min_sparsity = check_fraction(min_sparsity, "min_sparsity")
    max_sparsity = check_fraction(max_sparsity, "max_sparsity")
    if min_sparsity > max_sparsity:
        raise ValueError(f"min_sparsity ({min_sparsity}) is larger than max_sparsity ({max_sparsity})")
    from sparsert._blocks import check_block

    block = check_block(block)
    layers = select_layers(model, types, include, exclude, exclude_first, exclude_last)
    if not layers:
        raise ValueError("no layer selected for pruning (check types/include/exclude)")

    per_layer: dict[str, float] = {}
    if isinstance(sparsity, Mapping):
        if scope != "layer":
            raise ValueError("a per-layer sparsity mapping needs scope='layer'")
        patterns = {str(k): check_fraction(v, f"sparsity[{k!r}]") for k, v in sparsity.items()}
        for pattern in patterns:
            if not any(matches_any(name, [pattern]) for name, _ in layers):
                raise ValueError(f"sparsity pattern {pattern!r} matches no selected layer")
        for name, _ in layers:
            for pattern, value in patterns.items():
                if matches_any(name, [pattern]):
                    per_layer[name] = value
                    break
        layers = [(name, module) for name, module in layers if name in per_layer]
        target = sum(per_layer[n] * m.weight.numel() for n, m in layers) / sum(
            m.weight.numel() for _, m in layers
        )
    else:
        target = check_fraction(sparsity, "sparsity")
        per_layer = {name: target for name, _ in layers}

    scores = [_scores(module, block) for _, module in layers]
    units = [s.numel() for s in scores]
    bounds = [_count_bounds(n, min_sparsity, max_sparsity) for n in units]
    if scope == "layer":
        counts = []
        for (name, _), n, (low, high) in zip(layers, units, bounds):
            wanted = int(math.floor(per_layer[name] * n + 0.5))
            counts.append(min(max(wanted, low), high))
    else:
        total_numel = sum(s.numel() for s in scores)
        counts = _global_counts(scores, int(math.floor(target * total_numel + 0.5)), bounds)

    result = PruneResult(method="magnitude" if block == (1, 1) else f"magnitude block {block[0]}x{block[1]}",
                         scope=scope, target_sparsity=target)
    for (name, module), layer_scores, count in zip(layers, scores, counts):
        _prune_smallest(module, layer_scores, count, block)
        mask = get_param_mask(module, "weight")
        assert mask is not None
        result.layers[name] = LayerResult(name, mask.numel(), int((~mask).sum()))
    return result
