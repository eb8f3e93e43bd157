"""Choosing which layers a pruning call touches (types, glob include/exclude, first/last)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Optional, Union

from torch import nn

DEFAULT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)

Patterns = Optional[Union[str, Sequence[str]]]


def _as_patterns(patterns: Patterns, what: str) -> list[str]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        return [patterns]
    result = list(patterns)
    for pattern in result:
        if not isinstance(pattern, str):
            raise TypeError(f"{what} must be a glob string or a list of them, got {pattern!r}")
    return result


def matches_any(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def select_layers(
    model: nn.Module,
    types: Sequence[type[nn.Module]] = DEFAULT_TYPES,
    include: Patterns = None,
    exclude: Patterns = None,
    exclude_first: bool = False,
    exclude_last: bool = False,
) -> list[tuple[str, nn.Module]]:
    """Layers of ``model`` (in registration order) whose type is in ``types``, filtered by name.

    ``include``/``exclude`` are fnmatch globs on the qualified module name (``"features.*"``).
    ``exclude_first``/``exclude_last`` drop the first/last layer of the allowed types (in
    registration order, before the name filters) — usually the stem conv and the classifier.
    A pattern that matches no layer is an error, so typos do not silently prune everything.
    """
    types = tuple(types)
    if not types or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise TypeError(f"types must be a non-empty tuple of nn.Module subclasses, got {types!r}")
    include_list = _as_patterns(include, "include")
    exclude_list = _as_patterns(exclude, "exclude")
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, types) and isinstance(getattr(module, "weight", None), nn.Parameter)
    ]
    names = [name for name, _ in candidates]
    for pattern in include_list + exclude_list:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise ValueError(
                f"pattern {pattern!r} matches no layer of types {[t.__name__ for t in types]}; "
                f"layers are: {names}"
            )
    dropped: set[str] = set()
    if exclude_first and candidates:
        dropped.add(candidates[0][0])
    if exclude_last and candidates:
        dropped.add(candidates[-1][0])
    selected = []
    for name, module in candidates:
        if name in dropped:
            continue
        if include_list and not matches_any(name, include_list):
            continue
        if matches_any(name, exclude_list):
            continue
        selected.append((name, module))
    return selected


def first_layer_name(model: nn.Module, types: Sequence[type[nn.Module]] = DEFAULT_TYPES) -> str:
    """Name of the first layer of ``types`` (e.g. the stem conv), for use in ``exclude=``."""
    layers = select_layers(model, types)
    if not layers:
        raise ValueError("model has no layer of the given types")
    return layers[0][0]


def last_layer_name(model: nn.Module, types: Sequence[type[nn.Module]] = DEFAULT_TYPES) -> str:
    """Name of the last layer of ``types`` (usually the classifier), for use in ``exclude=``."""
    layers = select_layers(model, types)
    if not layers:
        raise ValueError("model has no layer of the given types")
    return layers[-1][0]
