"""Pruning masks that survive training, deep copies and pickling.

Design (documented in docs/pruning.md, "Masks"):

* A mask is a boolean buffer registered on the module next to the parameter it masks, named
  ``sparsert_mask_<param>`` (``True`` = weight kept).  The buffer is *non-persistent*, so
  ``state_dict()`` keys stay exactly the original ones (``weight``, ``bias``); the masked weights are
  stored as zeros.  Whole-module pickling (``torch.save(model)``) and ``copy.deepcopy`` keep the
  buffers, because they copy the module's ``__dict__``.
* A forward-pre-hook (a module-level function, so it pickles by reference) multiplies each masked
  parameter by its mask before every forward, and registers the module in a weak set of live masked
  modules.
* Two process-wide optimizer hooks (``torch.optim.optimizer.register_optimizer_step_pre_hook`` /
  ``..._post_hook``) zero the gradients of masked entries before ``optimizer.step()`` and re-zero
  the masked weights right after it.  This keeps pruned weights exactly zero between steps even
  with momentum or Adam state collected before pruning, and with any weight decay.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

MASK_PREFIX = "sparsert_mask_"
# Module attribute holding the structured-pruning record: {"out": [...], "in": [...], "channel": [...]}.
STRUCTURED_ATTR = "_sparsert_structured"

_LIVE_MASKED_MODULES: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _mask_items(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Yields (parameter name, bool mask) for every mask on ``module`` (not recursive)."""
    for buffer_name, buffer in module._buffers.items():
        if buffer_name.startswith(MASK_PREFIX) and buffer is not None:
            yield buffer_name[len(MASK_PREFIX) :], buffer


def _apply_module_masks(module: nn.Module) -> None:
    with torch.no_grad():
        for param_name, mask in _mask_items(module):
            param = getattr(module, param_name, None)
            if param is not None:
                param.mul_(mask)


def _mask_forward_pre_hook(module: nn.Module, args: object) -> None:
    _LIVE_MASKED_MODULES.add(module)
    _apply_module_masks(module)


def _optimizer_params(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def _optimizer_step_pre_hook(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
    if len(_LIVE_MASKED_MODULES) == 0:
        return
    owned = _optimizer_params(optimizer)
    with torch.no_grad():
        for module in list(_LIVE_MASKED_MODULES):
            for param_name, mask in _mask_items(module):
                param = getattr(module, param_name, None)
                if param is not None and id(param) in owned and param.grad is not None:
                    param.grad.mul_(mask)


def _optimizer_step_post_hook(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
    if len(_LIVE_MASKED_MODULES) == 0:
        return
    owned = _optimizer_params(optimizer)
    with torch.no_grad():
        for module in list(_LIVE_MASKED_MODULES):
            for param_name, mask in _mask_items(module):
                param = getattr(module, param_name, None)
                if param is not None and id(param) in owned:
                    param.mul_(mask)


register_optimizer_step_pre_hook(_optimizer_step_pre_hook)
register_optimizer_step_post_hook(_optimizer_step_post_hook)


def _has_hook(module: nn.Module) -> bool:
    return any(fn is _mask_forward_pre_hook for fn in module._forward_pre_hooks.values())


def get_param_mask(module: nn.Module, param_name: str) -> torch.Tensor | None:
    """The bool mask of ``module.<param_name>`` or ``None`` when it is not masked."""
    return module._buffers.get(MASK_PREFIX + param_name)


def set_param_mask(module: nn.Module, param_name: str, mask: torch.Tensor) -> None:
    """Sets (replaces) the mask of ``module.<param_name>`` and zeroes the masked entries now."""
    param = getattr(module, param_name, None)
    if not isinstance(param, torch.Tensor):
        raise ValueError(f"{type(module).__name__} has no tensor parameter '{param_name}' to mask")
    if tuple(mask.shape) != tuple(param.shape):
        raise ValueError(
            f"mask for '{param_name}' has shape {tuple(mask.shape)}, parameter has {tuple(param.shape)}"
        )
    if hasattr(module, param_name + "_orig"):
        raise ValueError(
            f"{type(module).__name__}.{param_name} is already pruned by torch.nn.utils.prune; "
            "call torch.nn.utils.prune.remove() first"
        )
    module.register_buffer(
        MASK_PREFIX + param_name, mask.detach().to(device=param.device, dtype=torch.bool), persistent=False
    )
    if not _has_hook(module):
        module.register_forward_pre_hook(_mask_forward_pre_hook)
    _LIVE_MASKED_MODULES.add(module)
    _apply_module_masks(module)


def and_param_mask(module: nn.Module, param_name: str, keep: torch.Tensor) -> None:
    """Combines ``keep`` with any existing mask (logical AND)."""
    old = get_param_mask(module, param_name)
    keep = keep.to(torch.bool)
    if old is not None:
        keep = keep.to(old.device) & old
    set_param_mask(module, param_name, keep)


def is_masked(module: nn.Module) -> bool:
    return any(True for _ in _mask_items(module))


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """All masks of ``model``, keyed by full parameter name (``"features.0.weight"``); True = kept.

    Returns copies: changing them does not change the model (use :func:`apply_masks` for that).
    """
    masks: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        for param_name, mask in _mask_items(module):
            key = f"{module_name}.{param_name}" if module_name else param_name
            masks[key] = mask.detach().clone()
    return masks


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Installs masks from :func:`get_masks` output (e.g. after ``load_state_dict`` into a fresh model)."""
    modules = dict(model.named_modules())
    for key, mask in masks.items():
        module_name, _, param_name = key.rpartition(".")
        if module_name not in modules:
            raise KeyError(f"mask '{key}': the model has no module '{module_name}'")
        and_param_mask(modules[module_name], param_name, mask)


def remove_masks(model: nn.Module) -> nn.Module:
    """Bakes every mask into its parameter (zeros stay zeros) and removes masks, hooks and records.

    After this the model is a plain PyTorch model whose pruned weights are zero but free to change.
    Returns ``model`` (modified in place).
    """
    for module in model.modules():
        if is_masked(module):
            _apply_module_masks(module)
            for param_name, _ in list(_mask_items(module)):
                del module._buffers[MASK_PREFIX + param_name]
                module._non_persistent_buffers_set.discard(MASK_PREFIX + param_name)
        for hook_id, fn in list(module._forward_pre_hooks.items()):
            if fn is _mask_forward_pre_hook:
                del module._forward_pre_hooks[hook_id]
        _LIVE_MASKED_MODULES.discard(module)
        if STRUCTURED_ATTR in module.__dict__:
            del module.__dict__[STRUCTURED_ATTR]
    return model


finalize = remove_masks


def structured_record(module: nn.Module) -> dict[str, list[int]]:
    """The structured-pruning record of ``module``: removed "out", "in" and per-"channel" indices."""
    record = module.__dict__.get(STRUCTURED_ATTR)
    if record is None:
        return {"out": [], "in": [], "channel": []}
    return {key: list(record.get(key, [])) for key in ("out", "in", "channel")}


def add_structured_record(module: nn.Module, key: str, indices: list[int]) -> None:
    record = module.__dict__.get(STRUCTURED_ATTR)
    if record is None:
        record = {"out": [], "in": [], "channel": []}
    record[key] = sorted(set(record[key]) | {int(i) for i in indices})
    module.__dict__[STRUCTURED_ATTR] = record
