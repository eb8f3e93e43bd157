"""What a pruning call returns: per-layer counts and, for structured pruning, the channel groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LayerResult:
    name: str
    numel: int  # weight entries of the layer
    pruned: int  # weight entries that are zero-masked after this call
    removed_out_channels: list[int] = field(default_factory=list)

    @property
    def sparsity(self) -> float:
        return self.pruned / self.numel if self.numel else 0.0


@dataclass
class GroupResult:
    """One dependency group of structured pruning (see docs/pruning.md, "Dependency groups")."""

    producers: list[str]  # layers whose output channels are removed together
    size: int  # number of prunable channel units
    removed: list[int]  # removed unit indices (= output channel indices of producers[0])
    blocked_by: list[str]  # why the group was left unpruned; empty when it was prunable

    @property
    def sparsity(self) -> float:
        return len(self.removed) / self.size if self.size else 0.0


@dataclass
class PruneResult:
    method: str
    scope: str
    target_sparsity: float
    layers: dict[str, LayerResult] = field(default_factory=dict)
    groups: list[GroupResult] = field(default_factory=list)

    @property
    def sparsity(self) -> float:
        """Fraction of zero-masked weights over all layers this call considered."""
        total = sum(layer.numel for layer in self.layers.values())
        return sum(layer.pruned for layer in self.layers.values()) / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "scope": self.scope,
            "target_sparsity": self.target_sparsity,
            "sparsity": self.sparsity,
            "layers": {
                name: {
                    "numel": layer.numel,
                    "pruned": layer.pruned,
                    "sparsity": layer.sparsity,
                    "removed_out_channels": list(layer.removed_out_channels),
                }
                for name, layer in self.layers.items()
            },
            "groups": [
                {
                    "producers": list(group.producers),
                    "size": group.size,
                    "removed": list(group.removed),
                    "blocked_by": list(group.blocked_by),
                }
                for group in self.groups
            ],
        }

    def table(self) -> str:
        width = max([len("layer")] + [len(name) for name in self.layers])
        lines = [
            f"{self.method} pruning, scope={self.scope}, target={self.target_sparsity:.3f}, "
            f"achieved={self.sparsity:.3f}",
            f"{'layer':<{width}}  {'weights':>10}  {'pruned':>10}  {'sparsity':>8}",
        ]
        for name, layer in self.layers.items():
            lines.append(f"{name:<{width}}  {layer.numel:>10}  {layer.pruned:>10}  {layer.sparsity:>8.3f}")
        for group in self.groups:
            status = (
                f"unpruned: {'; '.join(group.blocked_by)}"
                if group.blocked_by
                else (f"removed {len(group.removed)}/{group.size}")
            )
            lines.append(f"group {'+'.join(group.producers)}: {status}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
