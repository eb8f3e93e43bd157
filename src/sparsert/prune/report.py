"""Per-layer report (parameters, nonzeros, FLOPs) and the exporter-facing :func:`pruning_info`."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ._masks import get_param_mask, is_masked, structured_record
from .dependency import PER_CHANNEL_TYPES

_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _effective(module: nn.Module, param_name: str) -> torch.Tensor | None:
    param = getattr(module, param_name, None)
    if not isinstance(param, torch.Tensor):
        return None
    value = param.detach()
    mask = get_param_mask(module, param_name)
    return value * mask if mask is not None else value


def _is_depthwise(module: nn.Module) -> bool:
    return (
        isinstance(module, (nn.Conv1d, nn.Conv2d))
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
    )


def _kept_weight(module: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """The weight restricted to the channels that survive :func:`shrink`."""
    record = structured_record(module)
    if _is_depthwise(module) or isinstance(module, PER_CHANNEL_TYPES):
        keep = [i for i in range(weight.shape[0]) if i not in set(record["channel"])]
        return weight[keep]
    keep_out = [i for i in range(weight.shape[0]) if i not in set(record["out"])]
    weight = weight[keep_out]
    if weight.dim() >= 2:
        keep_in = [i for i in range(weight.shape[1]) if i not in set(record["in"])]
        weight = weight[:, keep_in]
    return weight


def pruning_info(model: nn.Module) -> dict[str, dict[str, Any]]:
    """What the exporter needs to know per module. Stable format (docs/pruning.md, "For exporters").

    Keys are qualified module names of every Linear/Conv1d/Conv2d/BatchNorm and of any other masked
    module; values are dicts with:

    * ``"kind"``: ``"structured"`` if channels were removed (its own outputs, its inputs, or its
      per-channel parameters), else ``"unstructured"`` if the weight has masked entries, else
      ``"none"``;
    * ``"sparsity"``: fraction of masked weight entries over the full (unshrunk) weight;
    * ``"removed_out_channels"``: sorted output channel indices that :func:`shrink` removes (for
      BatchNorm and depthwise convs: the removed channels);
    * ``"removed_in_channels"``: sorted input positions that :func:`shrink` removes (for a Linear
      after ``flatten`` these are flattened positions);
    * ``"sparsity_after_shrink"``: fraction of masked weight entries among the kept channels, i.e.
      the unstructured sparsity left for a CSR kernel once the layer is shrunk.
    """
    info: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        if not (isinstance(module, (*_LAYER_TYPES, *PER_CHANNEL_TYPES)) or is_masked(module)):
            continue
        record = structured_record(module)
        channel_wise = _is_depthwise(module) or isinstance(module, PER_CHANNEL_TYPES)
        removed_out = record["channel"] if channel_wise else record["out"]
        removed_in = record["channel"] if _is_depthwise(module) else record["in"]
        mask = get_param_mask(module, "weight")
        weight = getattr(module, "weight", None)
        sparsity = float((~mask).sum()) / mask.numel() if mask is not None and mask.numel() else 0.0
        after = 0.0
        if mask is not None and isinstance(weight, torch.Tensor):
            kept = _kept_weight(module, mask)
            after = float((~kept).sum()) / kept.numel() if kept.numel() else 0.0
        structured = bool(removed_out or removed_in)
        kind = "structured" if structured else ("unstructured" if sparsity > 0 else "none")
        info[name] = {
            "kind": kind,
            "sparsity": sparsity,
            "removed_out_channels": list(removed_out),
            "removed_in_channels": list(removed_in),
            "sparsity_after_shrink": after,
        }
    return info


@dataclass
class LayerReport:
    name: str
    type: str
    params: int  # weight + bias entries
    nonzeros: int  # nonzero weight + bias entries (after masks)
    sparsity: float  # zero fraction of the weight
    flops_before: int  # 2 * dense MACs for the example input
    flops_after: int  # 2 * MACs of the nonzero weights (= shrunk shapes for structured pruning)
    shape_before: list[int]
    shape_after: list[int]  # weight shape after shrink()


@dataclass
class Report:
    layers: list[LayerReport]

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def total_nonzeros(self) -> int:
        return sum(layer.nonzeros for layer in self.layers)

    @property
    def flops_before(self) -> int:
        return sum(layer.flops_before for layer in self.layers)

    @property
    def flops_after(self) -> int:
        return sum(layer.flops_after for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [asdict(layer) for layer in self.layers],
            "total": {
                "params": self.total_params,
                "nonzeros": self.total_nonzeros,
                "sparsity": 1.0 - self.total_nonzeros / self.total_params if self.total_params else 0.0,
                "flops_before": self.flops_before,
                "flops_after": self.flops_after,
            },
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        width = max([len("layer"), len("total")] + [len(layer.name) for layer in self.layers])
        header = (
            f"{'layer':<{width}}  {'type':<8}  {'params':>10}  {'nonzeros':>10}  {'sparsity':>8}  "
            f"{'MFLOPs':>10}  {'MFLOPs now':>10}  shape after"
        )
        lines = [header, "-" * len(header)]
        for layer in self.layers:
            lines.append(
                f"{layer.name:<{width}}  {layer.type:<8}  {layer.params:>10}  {layer.nonzeros:>10}  "
                f"{layer.sparsity:>8.3f}  {layer.flops_before / 1e6:>10.3f}  "
                f"{layer.flops_after / 1e6:>10.3f}  {'x'.join(map(str, layer.shape_after))}"
            )
        total = self.to_dict()["total"]
        lines.append("-" * len(header))
        lines.append(
            f"{'total':<{width}}  {'':<8}  {total['params']:>10}  {total['nonzeros']:>10}  "
            f"{total['sparsity']:>8.3f}  {total['flops_before'] / 1e6:>10.3f}  "
            f"{total['flops_after'] / 1e6:>10.3f}"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def report(model: nn.Module, example_input: Any) -> Report:
    """Per-layer parameters, nonzeros, sparsity and FLOPs of ``model`` on ``example_input``.

    FLOPs are 2 x multiply-accumulates of Linear/Conv1d/Conv2d layers for the whole example input
    (its batch included), from the output shapes seen by forward hooks.  "after" counts only the
    nonzero weights, which for structured pruning equals the FLOPs of the shrunk layer.
    """
    output_sizes: dict[str, list[torch.Size]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, _LAYER_TYPES):

            def hook(mod: nn.Module, args: Any, output: torch.Tensor, name: str = name) -> None:
                output_sizes.setdefault(name, []).append(output.shape)

            handles.append(module.register_forward_hook(hook))
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, _LAYER_TYPES):
            continue
        weight = _effective(module, "weight")
        bias = _effective(module, "bias")
        assert weight is not None
        params = weight.numel() + (bias.numel() if bias is not None else 0)
        nonzeros = int((weight != 0).sum()) + (int((bias != 0).sum()) if bias is not None else 0)
        weight_nonzeros = int((weight != 0).sum())
        flops_before = flops_after = 0
        for shape in output_sizes.get(name, []):
            if isinstance(module, nn.Linear):
                rows = math.prod(shape[:-1])
                flops_before += 2 * rows * module.in_features * module.out_features
                flops_after += 2 * rows * weight_nonzeros
            else:
                positions = math.prod(shape) // module.out_channels  # batch x spatial outputs
                flops_before += 2 * positions * weight.numel()
                flops_after += 2 * positions * weight_nonzeros
        layers.append(
            LayerReport(
                name=name,
                type=type(module).__name__,
                params=params,
                nonzeros=nonzeros,
                sparsity=float((weight == 0).sum()) / weight.numel() if weight.numel() else 0.0,
                flops_before=flops_before,
                flops_after=flops_after,
                shape_before=list(weight.shape),
                shape_after=list(_kept_weight(module, weight).shape),
            )
        )
    return Report(layers)
