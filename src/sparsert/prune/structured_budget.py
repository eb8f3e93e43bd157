"""Structured pruning to a latency budget: how many filters to remove per dependency group so that
the physically smaller model meets a target time on this machine (docs/pruning.md, "Pruning to a
latency budget").

A group's channels set the output width of its producers and the input width of its consumers,
which then run the dense kernels at their shrunk shapes. Their time follows the kernels' blocking
(row panels, vector widths, cache blocks), not the FLOPs alone, so every affected layer is timed
alone with the runtime at every combination of its output and input removal fractions (cached per
CPU and shape like :func:`latency_table`). The model time is predicted as the sum of those layer
times plus the rest of the model, measured end to end; the same greedy allocation as
:func:`budget_prune` then takes, step by step, the group removal that saves the most time per unit
of lost filter norm, and the plan is measured on a pruned, shrunk copy and corrected (up to three
rounds) before it is applied with :func:`structured_prune`.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ._select import Patterns, _as_patterns, matches_any
from .dependency import ChannelGroup, analyze_dependencies
from .latency import (
    BudgetUnreachableError,
    _cpu,
    _layer_inputs,
    _layer_spec,
    _load_cache,
    _save_cache,
    _time_layer,
    budget_table,
    measure_ms,
)
from .structured import _already_removed, _norm_scores, _round_kept, structured_prune

FRACTIONS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75)


@dataclass
class StructuredBudgetResult:
    """What :func:`structured_budget_prune` chose (per group: the share of units removed) and measured."""

    fractions: dict[str, float]  # group (its producers joined by "+") -> share of units removed
    kept: dict[str, int]  # group -> units kept
    target_ms: float
    dense_ms: float
    predicted_ms: float
    measured_ms: float | None
    met: bool
    threads: int
    cpu: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        return None if self.measured_ms is None else self.dense_ms / self.measured_ms

    def table(self) -> str:
        head = ["group", "units", "kept", "removed"]
        body = [[r["group"], str(r["units"]), str(r["kept"]), f"{r['fraction']:.1%}"] for r in self.rows]
        return budget_table(head, body, self, f"{self.threads} thread(s); {self.cpu}")


def _group_name(g: ChannelGroup) -> str:
    return "+".join(g.producers)


def _removed(units: int, fraction: float) -> int:
    return min(units - 1, int(math.floor(fraction * units + 0.5)))


def structured_budget_prune(
    model: nn.Module,
    example_inputs: Any,
    target_ms: float | None = None,
    speedup: float | None = None,
    threads: int = 1,
    criterion: str = "l1",
    fractions: Sequence[float] = FRACTIONS,
    round_to: int = 1,
    include: Patterns = None,
    exclude: Patterns = None,
    apply: bool = True,
    measure: bool = True,
    cache: bool = True,
    progress: bool = True,
    budget_s: float = 0.05,
) -> StructuredBudgetResult:
    """Chooses how many output channels each dependency group loses so that the physically
    smaller model meets ``target_ms`` (end to end, sparsert, at ``threads``) or ``speedup`` over
    the model's own sparsert time, removing the least filter norm (``criterion`` ``"l1"`` or
    ``"l2"``, as :func:`structured_prune` ranks units), and (``apply=True``) masks those channels
    in place with :func:`structured_prune` (export then writes the smaller layers; ``shrink``
    gives the smaller PyTorch model for fine-tuning).

    fractions: the removal shares tried per group (0 is always included; at most 0.95).
    round_to: keep a multiple of this many channels per group (see :func:`structured_prune`);
        the layers are timed at the rounded counts.
    Groups feeding the model output or holding an op the analysis cannot follow stay whole.
    """
    import sparsert
    from sparsert.runtime import _threads

    if criterion not in ("l1", "l2"):
        raise ValueError(f"criterion must be 'l1' or 'l2', got {criterion!r}")
    if (target_ms is None) == (speedup is None):
        raise ValueError("give exactly one of target_ms= (a latency in ms) or speedup= (over the dense model)")
    if target_ms is not None and not (isinstance(target_ms, (int, float)) and target_ms > 0):
        raise ValueError(f"target_ms must be a positive number, got {target_ms!r}")
    if speedup is not None and not (isinstance(speedup, (int, float)) and speedup >= 1):
        raise ValueError(f"speedup must be a number >= 1, got {speedup!r}")
    grid = tuple(sorted({0.0, *(float(f) for f in fractions)}))
    if any(not 0.0 <= f <= 0.95 for f in grid):
        raise ValueError(f"fractions must be in [0, 0.95], got {list(fractions)}")
    if isinstance(round_to, bool) or not isinstance(round_to, int) or not 1 <= round_to <= 1024:
        raise ValueError(f"round_to must be an int in [1, 1024], got {round_to!r}")
    include_list, exclude_list = _as_patterns(include, "include"), _as_patterns(exclude, "exclude")
    resolved = min(_threads(threads) or sparsert.default_threads(), sparsert.default_threads())

    modules = dict(model.named_modules())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # structured_prune warns about unprunable groups itself
        groups = [
            g for g in analyze_dependencies(model, example_inputs)
            if g.prunable
            and (not include_list or any(matches_any(p, include_list) for p in g.producers))
            and not any(matches_any(p, exclude_list) for p in g.producers)
        ]
    removed_before = [_already_removed(g, modules) for g in groups]
    if not groups:
        raise ValueError("no prunable channel group (all feed the output or hold ops the analysis cannot follow)")

    # Units removed per group at each grid point (rounded like structured_prune(round_to=)).
    sizes = [len(g.units) for g in groups]
    removal: list[list[int]] = []
    for n, before in zip(sizes, removed_before):
        low = int(before.sum())
        counts = [max(low, _removed(n, f)) for f in grid]
        removal.append(_round_kept(counts, [n] * len(grid), [(low, n - 1)] * len(grid), round_to))

    # Which group sets each timed layer's output / input width, and the input positions per unit.
    timed = {name for g in groups for u in g.units for name in (*u.out, *u.inputs)}
    timed = {n for n in timed if isinstance(modules.get(n), (nn.Linear, nn.Conv2d))
             and not (isinstance(modules[n], nn.Conv2d) and modules[n].groups != 1)}
    out_group: dict[str, int] = {}
    in_group: dict[str, tuple[int, float]] = {}
    for gi, g in enumerate(groups):
        for name in timed:
            if any(name in u.out for u in g.units):
                out_group[name] = gi
            positions = sum(len(u.inputs.get(name, [])) for u in g.units)
            if positions:
                in_group[name] = (gi, positions / len(g.units))
    shapes = _layer_inputs(model, example_inputs, sorted(timed))
    cpu = _cpu()
    entries = _load_cache() if cache else {}
    dirty = False

    def layer_ms(name: str, out_removed: int, in_removed: int) -> float:
        nonlocal dirty
        module = modules[name]
        op, attrs, x_shape = _layer_spec(module, shapes[name])
        w_shape = list(module.weight.shape)
        w_shape[0] -= out_removed
        x_shape = list(x_shape)
        if isinstance(module, nn.Conv2d):
            w_shape[1] -= in_removed
            x_shape[1] -= in_removed
        else:
            w_shape[1] -= in_removed
            x_shape[-1] -= in_removed
        key = json.dumps([cpu, resolved, op, w_shape, x_shape, attrs, 0.0, module.bias is not None, "dense"],
                         sort_keys=True)
        if key not in entries:
            rng = np.random.default_rng(0)
            w = rng.standard_normal(w_shape).astype(np.float32) * 0.1
            bias = rng.standard_normal(w_shape[0]).astype(np.float32) if module.bias is not None else None
            entries[key] = _time_layer(op, attrs, w, bias, tuple(x_shape), resolved, budget_s)
            dirty = True
        return entries[key]

    from tqdm.auto import tqdm

    # table[name][(i_out, i_in)] for the grid levels of its groups (0 when not in one)
    tables: dict[str, dict[tuple[int, int], float]] = {}
    for name in tqdm(sorted(n for n in timed if n in shapes), desc="timing shrunk layers",
                     disable=not progress, leave=False):
        go, gin = out_group.get(name), in_group.get(name)
        levels_out = range(len(grid)) if go is not None else [0]
        levels_in = range(len(grid)) if gin is not None else [0]
        tables[name] = {}
        for i in levels_out:
            for j in levels_in:
                out_removed = removal[go][i] if go is not None else 0
                in_removed = int(round(removal[gin[0]][j] * gin[1])) if gin is not None else 0
                tables[name][(i, j)] = layer_ms(name, out_removed, in_removed)
    if cache and dirty:
        _save_cache(entries)

    # the cost of a group's level: the share of its unit scores removed (lowest first)
    costs: list[list[float]] = []
    for g, before, counts in zip(groups, removed_before, removal):
        s = _norm_scores(g, modules, criterion)
        s = torch.where(before, torch.zeros_like(s), s)
        ordered = torch.sort(s).values
        total = float(ordered.sum()) or 1.0
        prefix = np.concatenate([[0.0], np.cumsum(ordered.numpy(), dtype=np.float64)])
        costs.append([float(prefix[c]) / total for c in counts])

    level = [0] * len(groups)

    def layers_ms() -> float:
        total = 0.0
        for name, tab in tables.items():
            go, gin = out_group.get(name), in_group.get(name)
            total += tab[(level[go] if go is not None else 0, level[gin[0]] if gin is not None else 0)]
        return total

    base_layers = layers_ms()
    dense_ms = measure_ms(model, example_inputs, resolved)
    target = float(target_ms) if target_ms is not None else dense_ms / float(speedup)
    # The rest of the model (BatchNorm, activations, residual adds, pooling) narrows with the
    # channels too, so the model time is predicted as the timed layers' sum times a scale: the
    # dense model's ratio at first, then corrected by each measured plan.
    scale = dense_ms / max(base_layers, 1e-9)

    def allocate() -> float:
        for k in range(len(level)):
            level[k] = 0
        now = layers_ms()
        while scale * now > target:
            best: tuple[float, int, int, float] | None = None
            for k in range(len(groups)):
                i = level[k]
                for j in range(i + 1, len(grid)):
                    if removal[k][j] <= removal[k][i]:
                        continue
                    level[k] = j
                    t = layers_ms()
                    level[k] = i
                    saved = now - t
                    if saved <= 0.003 * now:  # no time gained (within timing noise)
                        continue
                    ratio = saved / (costs[k][j] - costs[k][i] + 1e-12)
                    if best is None or ratio > best[0]:
                        best = (ratio, k, j, t)
            if best is None:
                break
            level[best[1]] = best[2]
            now = best[3]
        return scale * now

    def apply_to(m: nn.Module) -> None:
        for k, g in enumerate(groups):
            if removal[k][level[k]] > int(removed_before[k].sum()):
                # structured_prune removes floor(fraction * units + 0.5) units: exactly these
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    structured_prune(m, removal[k][level[k]] / len(g.units), example_inputs, criterion=criterion,
                                     include=[g.producers[0]], max_sparsity=0.99)

    # plan, try on a copy, measure, rescale (up to 3 rounds); keep the measured plan that meets
    # the target with the least pruning, else the fastest one
    tried: list[tuple[list[int], float, float | None]] = []
    for _ in range(3 if apply and measure else 1):
        pred = allocate()
        if not (apply and measure):
            tried.append((list(level), pred, None))
            break
        if any(plan == level for plan, _, _ in tried):
            break
        trial = copy.deepcopy(model)
        apply_to(trial)
        measured_now = measure_ms(trial, example_inputs, resolved)
        tried.append((list(level), pred, measured_now))
        if abs(measured_now / target - 1.0) <= 0.05 or pred > target:
            break
        scale *= measured_now / pred
    met = [t for t in tried if t[2] is not None and t[2] <= target * 1.05]
    chosen = max(met, key=lambda t: t[2]) if met else min(tried, key=lambda t: t[2] if t[2] is not None else t[1])
    level[:] = chosen[0]
    pred, measured = chosen[1], chosen[2]
    rows = []
    fractions_out: dict[str, float] = {}
    kept: dict[str, int] = {}
    for k, g in enumerate(groups):
        name = _group_name(g)
        removed = removal[k][level[k]]
        fractions_out[name] = removed / len(g.units)
        kept[name] = len(g.units) - removed
        rows.append({"group": name, "units": len(g.units), "kept": kept[name], "fraction": fractions_out[name]})
    final = measured if measured is not None else pred
    result = StructuredBudgetResult(fractions_out, kept, target, dense_ms, pred, measured,
                                    final <= target * 1.05, resolved, cpu, rows)
    if pred > target and final > target * 1.10:
        # the allocation ran out of groups to cut: no plan on the grid meets the target
        best = f"measured {measured:.3f} ms" if measured is not None else f"predicted {pred:.3f} ms"
        raise BudgetUnreachableError(
            f"structured_budget_prune: the target {target:.3f} ms is out of reach on this machine at {resolved} "
            f"thread(s): the fastest plan found (up to {grid[-1]:.0%} of each group's channels) runs {best} "
            f"(dense {dense_ms:.3f} ms). The model was not pruned; ask for target_ms >= {final:.3f} (the plan is "
            f"in this error's .result) or allow larger fractions=.", result)
    if apply:
        apply_to(model)
    if not result.met:
        warnings.warn(
            f"structured_budget_prune: the plan runs {final:.3f} ms against a target of {target:.3f} ms after "
            f"{len(tried)} measured round(s) (dense {dense_ms:.3f} ms)", stacklevel=2)
    return result
