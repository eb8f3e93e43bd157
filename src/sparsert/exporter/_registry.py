"""The exporter's tables and error types: which ``torch.nn`` module types, functions and tensor
methods lower to catalogue ops. :mod:`._modules` and :mod:`._functions` fill them when imported
(one entry per module type / function / method, next to its lowering); :mod:`._context` looks
nodes up in them, and the tracer keeps every listed module type as a leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sparsert import UnsupportedError


class UnsupportedOpError(UnsupportedError):
    """The model uses ops/modules the exporter cannot map; the message lists all of them."""


class _Unsupported(Exception):
    pass


# (module type, lowering) in match order: subclasses before their bases (ReLU6 is a Hardtanh).
MODULES: list[tuple[type, Callable[..., Any]]] = []
# function object (torch.add, F.relu, operator.getitem...) -> lowering
FUNCTIONS: dict[Any, Callable[..., Any]] = {}
# tensor method name ("view", "add_"...) -> lowering
METHODS: dict[str, Callable[..., Any]] = {}
