"""Knowledge distillation for pruning: fine-tune a pruned student to match a frozen dense teacher.

One-shot pruning of a pretrained transformer wrecks it (magnitude-pruning every encoder Linear of
all-MiniLM-L6-v2 to 70% gives embeddings at mean cosine 0.44 to the dense ones); pruning
gradually while the student learns to reproduce the teacher's outputs recovers it (Zhu & Gupta's
schedule; the oBERT / SparseML recipes). :func:`distill` is the training loop and
:func:`distillation_fine_tune` wraps it as the ``fine_tune_fn`` of :func:`iterative_prune`.
Masks stay enforced (every optimiser step re-applies them), so pruned weights stay zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .schedule import train_epochs

LOSSES = ("cosine", "mse", "kl")


def default_forward(model: nn.Module, batch: Any) -> torch.Tensor:
    """``model(**batch)`` for a dict, ``model(*batch)`` for a tuple/list, else ``model(batch)``;
    of a tuple / ModelOutput result, the first tensor (``last_hidden_state`` for transformers)."""
    if isinstance(batch, dict):
        out = model(**batch)
    elif isinstance(batch, (tuple, list)):
        out = model(*batch)
    else:
        out = model(batch)
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"cannot take a tensor from a model output of type {type(out).__name__}; pass forward=")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, loss: str = "cosine",
                      temperature: float = 1.0) -> torch.Tensor:
    """``"cosine"``: mean of 1 - cos along the last axis (embeddings, hidden states); ``"mse"``;
    ``"kl"``: KL(teacher || student) of the softmax of logits at ``temperature`` (times T^2)."""
    if student.shape != teacher.shape:
        raise ValueError(f"student output {tuple(student.shape)} and teacher output {tuple(teacher.shape)} differ")
    if loss == "cosine":
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    if loss == "mse":
        return F.mse_loss(student, teacher)
    if loss == "kl":
        t = float(temperature)
        return F.kl_div(F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1),
                        log_target=True, reduction="batchmean") * t * t
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: Iterable[Any],
    loss: str = "cosine",
    epochs: int = 1,
    lr: float = 5e-5,
    weight_decay: float = 0.0,
    temperature: float = 1.0,
    forward: Callable[[nn.Module, Any], torch.Tensor] = default_forward,
    seed: int | None = None,
    progress: bool = True,
    desc: str = "distill",
) -> list[float]:
    """Trains ``student`` (AdamW) to reproduce ``teacher`` (frozen, eval mode, no gradients) on
    ``batches`` (an iterable of model inputs, re-iterated each epoch); returns each epoch's mean
    loss. ``forward(model, batch)`` gives the tensor to match (default: :func:`default_forward`).
    The student is left in eval mode."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if seed is not None:
        torch.manual_seed(seed)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    student.train()

    def batch_loss(batch: Any) -> torch.Tensor:
        with torch.no_grad():
            want = forward(teacher, batch)
        return distillation_loss(forward(student, batch), want, loss, temperature)

    try:
        return train_epochs(opt, batches, batch_loss, epochs, desc, progress, "distill: batches yielded nothing")
    finally:
        student.eval()


def distillation_fine_tune(teacher: nn.Module, batches: Iterable[Any], **kwargs: Any) -> Callable[[nn.Module, int], None]:
    """A ``fine_tune_fn(model, step)`` for :func:`iterative_prune` that distils from ``teacher``
    after each pruning step (``kwargs`` as :func:`distill`; the seed, when given, is offset by
    the step so each step is reproducible on its own, which makes a run resumable)."""
    seed = kwargs.pop("seed", None)

    def fine_tune_fn(model: nn.Module, step: int) -> None:
        distill(model, teacher, batches, seed=None if seed is None else seed + step,
                desc=f"distill (step {step})", **kwargs)

    return fine_tune_fn
