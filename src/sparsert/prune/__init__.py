"""Pruning of ordinary ``torch.nn.Module`` models (see docs/pruning.md).

Unstructured magnitude pruning (per layer or one global threshold), structured pruning of Conv
filters / Linear neurons with a torch.fx dependency analysis, masks that survive fine-tuning,
schedules, sensitivity analysis, reports, and :func:`pruning_info` for the exporter.
This package imports only torch, numpy and tqdm; :mod:`.latency` (latency tables, budget
pruning) loads the compiled runtime when one of its functions is called.
"""

from ._masks import apply_masks, finalize, get_masks, remove_masks
from ._result import GroupResult, LayerResult, PruneResult
from ._select import first_layer_name, last_layer_name, select_layers
from .dependency import ChannelGroup, ChannelUnit, analyze_dependencies
from .distill import distill, distillation_fine_tune, distillation_loss
from .latency import (
    BudgetResult,
    BudgetUnreachableError,
    LatencyTable,
    LayerLatency,
    budget_prune,
    latency_table,
)
from .magnitude import magnitude_prune
from .report import LayerReport, Report, pruning_info, report
from .schedule import CubicSchedule, LinearSchedule, Schedule, fine_tune, iterative_prune
from .sensitivity import SensitivityResult, sensitivity_analysis
from .structured import shrink, structured_prune, taylor_scores
from .structured_budget import StructuredBudgetResult, structured_budget_prune

__all__ = [
    "BudgetResult",
    "BudgetUnreachableError",
    "LatencyTable",
    "LayerLatency",
    "budget_prune",
    "structured_budget_prune",
    "StructuredBudgetResult",
    "distill",
    "distillation_fine_tune",
    "distillation_loss",
    "latency_table",
    "ChannelGroup",
    "ChannelUnit",
    "CubicSchedule",
    "GroupResult",
    "LayerReport",
    "LayerResult",
    "LinearSchedule",
    "PruneResult",
    "Report",
    "Schedule",
    "SensitivityResult",
    "analyze_dependencies",
    "apply_masks",
    "finalize",
    "fine_tune",
    "first_layer_name",
    "get_masks",
    "iterative_prune",
    "last_layer_name",
    "magnitude_prune",
    "pruning_info",
    "remove_masks",
    "report",
    "select_layers",
    "sensitivity_analysis",
    "shrink",
    "structured_prune",
    "taylor_scores",
]
