"""torch.fx graph -> the shared intermediate graph (:mod:`sparsert.ir`).

The model is traced with ``torch.fx.symbolic_trace`` (:mod:`._trace`); ``torch.nn`` layers stay
leaf modules, so a ``Conv2d`` arrives as one ``call_module`` node with its module at hand
(weights, padding mode, the BatchNorm after it). The traced graph is then run once on the
example input, recording per node the shape of every tensor that depends on the input and the
value of everything else: shape arithmetic (``x.size(0)``) and tensors computed from parameters
alone become constants; reshapes take their target from the recorded output shape.

Each remaining node is looked up in three tables (:mod:`._registry`) — modules (by
``isinstance``, :mod:`._modules`), functions and tensor methods (:mod:`._functions`) — and
lowered to catalogue ops by the context of :mod:`._context`. Nodes found in none are collected,
and every one of them is reported in a single :class:`UnsupportedOpError`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.fx

from sparsert.ir import Graph

from . import _functions, _modules  # noqa: F401  (they fill the tables)
from ._context import Lowering, effective_param
from ._registry import UnsupportedOpError
from ._trace import trace


def lower(gm: torch.fx.GraphModule, inputs: Sequence[torch.Tensor], model_name: str) -> Graph:
    lowering = Lowering(gm, inputs)
    graph = lowering.run()
    if lowering.errors:
        count = len(lowering.errors)
        raise UnsupportedOpError(
            f"cannot export {model_name}: {count} unsupported operation{'s' if count > 1 else ''}:\n  - "
            + "\n  - ".join(lowering.errors)
            + "\n(supported modules, functions and methods are listed in docs/export.md)"
        )
    return graph

__all__ = ["UnsupportedOpError", "effective_param", "lower", "trace"]

