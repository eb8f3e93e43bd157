"""The exporter's tables and error types: which ``torch.nn`` module types, functions and tensor
methods lower to catalogue ops. :mod:`._modules` and :mod:`._functions` fill them when imported
(one entry per module type / function / method, next to its lowering); :mod:`._context` looks
nodes up in them, and the tracer keeps every listed module type as a leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

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

_VIA_ONNX = (
    "export the model with torch.onnx.export and convert the .onnx with sparsert.convert, which runs "
    "{what} (docs/onnx.md)"
)
# Module types the exporter does not map and torch.fx cannot trace into (data-dependent control
# flow inside): kept as leaves so they are reported by name, with what to do instead.
OPAQUE: tuple[tuple[type, str], ...] = (
    (nn.LSTM, _VIA_ONNX.format(what="LSTM and GRU layers")),
    (nn.GRU, _VIA_ONNX.format(what="LSTM and GRU layers")),
    (nn.RNN, "plain RNN layers are not supported by either frontend; use nn.GRU or nn.LSTM"),
    (nn.MultiheadAttention, _VIA_ONNX.format(what="attention")),
    (nn.TransformerEncoderLayer, _VIA_ONNX.format(what="transformer encoders")),
    (nn.TransformerDecoderLayer, _VIA_ONNX.format(what="transformer decoders")),
    (nn.TransformerEncoder, _VIA_ONNX.format(what="transformer encoders")),
    (nn.TransformerDecoder, _VIA_ONNX.format(what="transformer decoders")),
    (nn.Transformer, _VIA_ONNX.format(what="transformers")),
)
SCRIPT_ADVICE = (
    "TorchScript modules cannot be traced by torch.fx: pass the original nn.Module, or "
    "torch.onnx.export the scripted module and convert the .onnx with sparsert.convert"
)


def opaque_advice(module: nn.Module) -> str | None:
    """What to do instead, for a module type the exporter reports without tracing into it."""
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        return SCRIPT_ADVICE
    for cls, advice in OPAQUE:
        if isinstance(module, cls):
            return advice
    return None
