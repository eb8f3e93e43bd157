"""Sensitivity analysis: prune one layer at a time (on a copy) and measure a user metric."""

from __future__ import annotations

import copy
import glob
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from tqdm.auto import tqdm

from ._select import DEFAULT_TYPES, Patterns, select_layers
from .dependency import analyze_dependencies
from .magnitude import check_fraction, magnitude_prune
from .structured import structured_prune


@dataclass
class SensitivityResult:
    baseline: float
    sparsities: list[float]
    rows: list[dict[str, Any]] = field(default_factory=list)  # {"layer", "sparsity", "metric", "delta"}

    def layers(self) -> list[str]:
        return list(dict.fromkeys(row["layer"] for row in self.rows))

    def table(self) -> str:
        width = max([len("layer")] + [len(name) for name in self.layers()])
        lines = [
            f"baseline metric: {self.baseline:.4f}",
            f"{'layer':<{width}}  " + "  ".join(f"{s:>8.3f}" for s in self.sparsities),
        ]
        for name in self.layers():
            values = {row["sparsity"]: row["metric"] for row in self.rows if row["layer"] == name}
            cells = [f"{values[s]:>8.4f}" if s in values else f"{'-':>8}" for s in self.sparsities]
            lines.append(f"{name:<{width}}  " + "  ".join(cells))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str) -> None:
        """Saves metric-vs-sparsity curves, one per layer (needs matplotlib)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise RuntimeError(
                "SensitivityResult.plot needs matplotlib: pip install matplotlib (or sparsert[bench])"
            ) from exc
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for name in self.layers():
            points = sorted((row["sparsity"], row["metric"]) for row in self.rows if row["layer"] == name)
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        axes.axhline(self.baseline, color="gray", linestyle="--", label="dense")
        axes.set_xlabel("sparsity of the layer")
        axes.set_ylabel("metric")
        axes.set_title("pruning sensitivity per layer")
        axes.legend(fontsize="small")
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)


def sensitivity_analysis(
    model: nn.Module,
    metric_fn: Callable[[nn.Module], float],
    sparsities: Sequence[float] = (0.25, 0.5, 0.75, 0.9),
    method: str = "magnitude",
    types: Sequence[type[nn.Module]] = DEFAULT_TYPES,
    include: Patterns = None,
    exclude: Patterns = None,
    example_input: Any = None,
    plot_path: str | None = None,
    progress: bool = True,
) -> SensitivityResult:
    """Prunes each selected layer alone at each sparsity on a deep copy and evaluates ``metric_fn``.

    ``method="magnitude"`` prunes the layer's weights; ``"l1"``/``"l2"`` prune its output channels
    (with their coupled group; needs ``example_input``; layers whose group cannot be pruned are
    skipped).  ``model`` itself is never changed.
    """
    if method not in ("magnitude", "l1", "l2"):
        raise ValueError(f"method must be 'magnitude', 'l1' or 'l2', got {method!r}")
    if method != "magnitude" and example_input is None:
        raise ValueError(f"method={method!r} needs example_input for the dependency analysis")
    levels = [check_fraction(s, "sparsity") for s in sparsities]
    if not levels:
        raise ValueError("sparsities is empty")
    result = SensitivityResult(baseline=float(metric_fn(copy.deepcopy(model))), sparsities=levels)
    names = [name for name, _ in select_layers(model, types, include, exclude)]
    if method != "magnitude":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prunable = {
                p for g in analyze_dependencies(model, example_input) if g.prunable for p in g.producers
            }
        names = [name for name in names if name in prunable]
    jobs = [(name, s) for name in names for s in levels]
    for name, level in tqdm(jobs, desc="sensitivity", disable=not progress):
        trial = copy.deepcopy(model)
        if method == "magnitude":
            magnitude_prune(trial, sparsity=level, include=glob.escape(name), types=types, max_sparsity=1.0)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structured_prune(trial, level, example_input, criterion=method, include=glob.escape(name))
        metric = float(metric_fn(trial))
        result.rows.append(
            {"layer": name, "sparsity": level, "metric": metric, "delta": metric - result.baseline}
        )
    if plot_path is not None:
        result.plot(plot_path)
    return result
