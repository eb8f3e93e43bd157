"""Sparsity schedules, the iterative prune / fine-tune loop and a small fine-tuning helper."""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ._result import PruneResult
from .magnitude import check_fraction, magnitude_prune
from .structured import CRITERIA, structured_prune


class Schedule(abc.ABC):
    """Sparsity as a function of the step ``t`` in ``0..steps`` (``t=0`` gives ``initial``)."""

    def __init__(self, initial: float, final: float, steps: int) -> None:
        self.initial = check_fraction(initial, "initial")
        self.final = check_fraction(final, "final")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        self.steps = steps

    @abc.abstractmethod
    def _progress(self, fraction: float) -> float:
        """Share of the way from initial to final sparsity after ``fraction`` of the steps."""

    def __call__(self, t: int) -> float:
        if not 0 <= t <= self.steps:
            raise ValueError(f"step {t} outside 0..{self.steps}")
        return self.initial + (self.final - self.initial) * self._progress(t / self.steps)

    def values(self) -> list[float]:
        """Sparsities of steps 1..steps (the targets :func:`iterative_prune` prunes to)."""
        return [self(t) for t in range(1, self.steps + 1)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(initial={self.initial}, final={self.final}, steps={self.steps})"


class LinearSchedule(Schedule):
    """s_t = s_i + (s_f - s_i) * t / n."""

    def _progress(self, fraction: float) -> float:
        return fraction


class CubicSchedule(Schedule):
    """Zhu & Gupta 2017: s_t = s_f + (s_i - s_f) * (1 - t/n)^3 (fast early, gentle late)."""

    def _progress(self, fraction: float) -> float:
        return 1.0 - (1.0 - fraction) ** 3


def iterative_prune(
    model: nn.Module,
    schedule: Schedule,
    fine_tune_fn: Callable[[nn.Module, int], Any] | None,
    method: str = "magnitude",
    progress: bool = True,
    targets: Mapping[str, float] | None = None,
    **kwargs: Any,
) -> list[PruneResult]:
    """For each step 1..n: prune to ``schedule(step)``, then call ``fine_tune_fn(model, step)``.

    ``targets`` (magnitude only): per-layer final sparsities, e.g. ``budget_prune(...,
    apply=False).sparsities``; step t prunes each layer to ``targets[layer] * schedule(t) /
    schedule.final``, so the schedule's shape ramps every layer towards its own target.

    ``method`` is ``"magnitude"`` (kwargs go to :func:`magnitude_prune`) or one of ``"l1"``,
    ``"l2"``, ``"taylor"`` (kwargs go to :func:`structured_prune`; ``example_input`` is required).
    Masks only grow, so each step ranks the surviving weights and removes a further portion.
    Returns the :class:`PruneResult` of every step.
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a LinearSchedule/CubicSchedule, got {type(schedule).__name__}")
    if method != "magnitude" and method not in CRITERIA:
        raise ValueError(f"method must be 'magnitude' or one of {CRITERIA}, got {method!r}")
    if method != "magnitude" and "example_input" not in kwargs:
        raise ValueError(f"method={method!r} needs example_input= for the dependency analysis")
    if targets is not None:
        if method != "magnitude":
            raise ValueError("targets= (per-layer sparsities) works with method='magnitude'")
        if not isinstance(targets, Mapping):
            raise TypeError(f"targets must map layer names to sparsities, got {type(targets).__name__}")
        bad = {k: v for k, v in targets.items() if not 0.0 <= float(v) <= 1.0}
        if bad:
            raise ValueError(f"targets must be sparsities in [0, 1], got {bad}")
        if schedule.final <= 0:
            raise ValueError("with targets=, the schedule's final value must be above 0 (e.g. 1.0)")
        if not any(float(v) > 0 for v in targets.values()):
            # A latency plan may keep every layer dense (no sparsity is faster on this machine).
            warnings.warn("iterative_prune: every target sparsity is 0 (the plan keeps all layers dense); "
                          "nothing was pruned or fine-tuned", stacklevel=2)
            return []
    results = []
    bar = tqdm(range(1, schedule.steps + 1), desc="pruning", disable=not progress)
    for step in bar:
        target = schedule(step)
        if targets is not None:
            fraction = target / schedule.final
            per_layer = {name: float(v) * fraction for name, v in targets.items() if float(v) > 0}
            result = magnitude_prune(model, sparsity=per_layer, include=list(per_layer), **kwargs)
        elif method == "magnitude":
            result = magnitude_prune(model, sparsity=target, **kwargs)
        else:
            result = structured_prune(model, sparsity=target, criterion=method, **kwargs)
        results.append(result)
        bar.set_postfix(sparsity=f"{result.sparsity:.3f}")
        if fine_tune_fn is not None:
            fine_tune_fn(model, step)
    return results


def fine_tune(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: Callable[[torch.Tensor, Any], torch.Tensor],
    epochs: int = 1,
    lr: float = 1e-3,
    optimizer: str = "adam",
    device: str | torch.device = "cpu",
    progress: bool = True,
    weight_decay: float = 0.0,
) -> list[float]:
    """A plain training loop (masks stay enforced); returns the mean loss of each epoch.

    ``loader`` yields ``(inputs, targets)``; ``optimizer`` is ``"adam"``, ``"adamw"`` or ``"sgd"``
    (momentum 0.9).  The model is left in train mode on ``device``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {optimizer!r}")
    model.to(device)
    model.train()

    def batch_loss(batch: Any) -> torch.Tensor:
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise ValueError("fine_tune needs a loader yielding (inputs, targets) pairs")
        return loss_fn(model(batch[0].to(device)), batch[1].to(device))

    return train_epochs(opt, loader, batch_loss, epochs, "fine-tune", progress, "fine_tune: the loader yielded no batch")


def train_epochs(opt: torch.optim.Optimizer, batches: Iterable[Any], batch_loss: Callable[[Any], torch.Tensor],
                 epochs: int, desc: str, progress: bool, empty: str,
                 after_step: Callable[[], Any] | None = None) -> list[float]:
    """The loop fine_tune and distill share: per batch, zero the gradients, back-propagate
    ``batch_loss(batch)`` and step (sparsert masks re-apply after every step), then call
    ``after_step`` (a learning-rate schedule); returns each epoch's mean loss, and raises
    ValueError(``empty``) when an epoch sees no batch."""
    losses = []
    for epoch in range(epochs):
        total, count = 0.0, 0
        bar = tqdm(batches, desc=f"{desc} {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for batch in bar:
            opt.zero_grad(set_to_none=True)
            loss = batch_loss(batch)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
            total += float(loss.detach())
            count += 1
            bar.set_postfix(loss=f"{total / count:.4f}")
        if count == 0:
            raise ValueError(empty)
        losses.append(total / count)
    return losses
