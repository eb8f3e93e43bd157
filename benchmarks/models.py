"""The benchmark models, written once and emitted three ways.

Each model is a small op list (:class:`Net`) with numpy weights. It is emitted as

* a ``.spr`` file through :class:`sparsert.GraphBuilder` (needs only numpy, so the model-level
  benchmarks of sparsert run on a board that has nothing else installed),
* an ONNX model through ``onnx.helper`` (for onnxruntime; needs ``onnx``),
* a ``torch.nn.Module`` that runs the same ops eagerly with ``torch.nn.functional`` (needs torch).

Every model has its BatchNorm already folded into the convolutions (what ``sparsert.export`` and
onnxruntime do anyway), random He-initialised weights, and a seed, so all three libraries run
exactly the same numbers. Pruning is per-layer magnitude pruning of the "prunable" weights (every
Linear, every non-depthwise convolution except the RGB stem); structured pruning is the model
built with its inner widths halved, as ``sparsert.prune`` + ``shrink`` would produce.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ACTIVATIONS = ("none", "relu", "relu6", "gelu")


@dataclass
class Op:
    kind: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    prunable: bool = False  # magnitude pruning applies to weights["w"]


@dataclass
class Net:
    """A single-input, single-output feed-forward graph in topological order."""

    name: str
    input_shape: tuple[int, ...]  # without the batch dim
    ops: list[Op] = field(default_factory=list)
    output: str = ""
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0), repr=False)

    input_name = "x"

    def _add(
        self,
        kind: str,
        inputs: Sequence[str],
        attrs: dict[str, Any] | None = None,
        weights: dict[str, np.ndarray] | None = None,
        prunable: bool = False,
    ) -> str:
        out = f"{kind}{len(self.ops)}"
        self.ops.append(Op(kind, list(inputs), out, dict(attrs or {}), dict(weights or {}), prunable))
        self.output = out
        return out

    def _normal(self, shape: tuple[int, ...], std: float) -> np.ndarray:
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    # -- layers ---------------------------------------------------------------
    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int,
        stride: int = 1,
        groups: int = 1,
        act: str = "none",
        residual: str | None = None,
    ) -> str:
        assert act in ACTIVATIONS
        fan_in = cin // groups * k * k
        w = self._normal((cout, cin // groups, k, k), math.sqrt(2.0 / fan_in))
        b = self._normal((cout,), 0.01)
        inputs = [x] if residual is None else [x, residual]
        return self._add(
            "conv",
            inputs,
            {"stride": stride, "pad": k // 2, "groups": groups, "act": act},
            {"w": w, "b": b},
            prunable=groups == 1 and cin > 3,
        )

    def linear(self, x: str, fin: int, fout: int, act: str = "none") -> str:
        assert act in ACTIVATIONS
        w = self._normal((fout, fin), math.sqrt(2.0 / fin))
        b = self._normal((fout,), 0.01)
        return self._add("linear", [x], {"act": act}, {"w": w, "b": b}, prunable=True)

    def maxpool(self, x: str, k: int, stride: int, pad: int) -> str:
        return self._add("maxpool", [x], {"k": k, "stride": stride, "pad": pad})

    def global_avgpool_flatten(self, x: str) -> str:
        return self._add("gap_flatten", [x])

    def add(self, a: str, b: str) -> str:
        return self._add("add", [a, b])

    def scale(self, x: str, factor: float) -> str:
        return self._add("scale", [x], weights={"c": np.array([factor], dtype=np.float32)})

    def layernorm(self, x: str, dim: int) -> str:
        g = (1.0 + self._normal((dim,), 0.05)).astype(np.float32)
        b = self._normal((dim,), 0.05)
        return self._add("layernorm", [x], {"eps": 1e-12}, {"g": g, "b": b})

    def matmul(self, a: str, b: str) -> str:
        return self._add("matmul", [a, b])

    def softmax(self, x: str) -> str:
        return self._add("softmax", [x])

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        """ONNX rules: 0 copies the input dim (used for the batch and sequence dims)."""
        return self._add("reshape", [x], {"shape": [int(s) for s in shape]})

    def transpose(self, x: str, perm: Sequence[int]) -> str:
        return self._add("transpose", [x], {"perm": [int(p) for p in perm]})

    # -- facts ------------------------------------------------------------------
    def prunable_weights(self) -> list[np.ndarray]:
        return [op.weights["w"] for op in self.ops if op.prunable]

    def weight_sparsity(self) -> float:
        ws = self.prunable_weights()
        total = sum(w.size for w in ws)
        return 1.0 - sum(int(np.count_nonzero(w)) for w in ws) / total if total else 0.0


# ---------------------------------------------------------------------------
# Model definitions. `width` scales channel counts and `inner` the channels that
# structured pruning removes (1.0 = the dense model, 0.5 = 50% structured).


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def resnet18(
    image: int = 224, width: float = 1.0, inner: float = 1.0, classes: int = 1000, seed: int = 0
) -> Net:
    net = Net("resnet18", (3, image, image), rng=np.random.default_rng(seed))
    c = _ch(64, width)
    x = net.conv(net.input_name, 3, c, 7, stride=2, act="relu")
    x = net.maxpool(x, 3, 2, 1)
    cin = c
    for stage, base in enumerate((64, 128, 256, 512)):
        cout = _ch(base, width)
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            mid = _ch(cout, inner)
            identity = x
            if stride != 1 or cin != cout:
                identity = net.conv(x, cin, cout, 1, stride=stride)
            h = net.conv(x, cin, mid, 3, stride=stride, act="relu")
            x = net.conv(h, mid, cout, 3, act="relu", residual=identity)
            cin = cout
    x = net.global_avgpool_flatten(x)
    net.linear(x, cin, classes)
    return net


_MOBILENET_V2 = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenet_v2(
    image: int = 224, width: float = 1.0, inner: float = 1.0, classes: int = 1000, seed: int = 0
) -> Net:
    net = Net("mobilenet_v2", (3, image, image), rng=np.random.default_rng(seed))
    cin = _ch(32, width)
    x = net.conv(net.input_name, 3, cin, 3, stride=2, act="relu6")
    for t, c, n, s in _MOBILENET_V2:
        cout = _ch(c, width)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t if t == 1 else _ch(cin * t, inner)
            h = x
            if t != 1:
                h = net.conv(h, cin, hidden, 1, act="relu6")
            h = net.conv(h, hidden, hidden, 3, stride=stride, groups=hidden, act="relu6")
            residual = x if stride == 1 and cin == cout else None
            x = net.conv(h, hidden, cout, 1, residual=residual)
            cin = cout
    last = _ch(1280, width)
    x = net.conv(x, cin, last, 1, act="relu6")
    x = net.global_avgpool_flatten(x)
    net.linear(x, last, classes)
    return net


def bert_encoder(
    seq: int = 128,
    hidden: int = 768,
    heads: int = 12,
    ffn: int = 3072,
    layers: int = 2,
    inner: float = 1.0,
    seed: int = 0,
) -> Net:
    """BERT-base style post-LayerNorm encoder layers on embeddings ``[batch, seq, hidden]``.
    Structured pruning keeps ``inner`` of the attention heads and of the FFN width."""
    net = Net("bert_encoder", (seq, hidden), rng=np.random.default_rng(seed))
    head_dim = hidden // heads
    kept_heads = max(1, int(round(heads * inner)))
    attn = kept_heads * head_dim
    ffn_kept = _ch(ffn, inner)
    x = net.input_name
    for _ in range(layers):
        q = net.transpose(
            net.reshape(net.linear(x, hidden, attn), [0, 0, kept_heads, head_dim]), [0, 2, 1, 3]
        )
        k = net.transpose(
            net.reshape(net.linear(x, hidden, attn), [0, 0, kept_heads, head_dim]), [0, 2, 3, 1]
        )
        v = net.transpose(
            net.reshape(net.linear(x, hidden, attn), [0, 0, kept_heads, head_dim]), [0, 2, 1, 3]
        )
        p = net.softmax(net.scale(net.matmul(q, k), 1.0 / math.sqrt(head_dim)))
        ctx = net.reshape(net.transpose(net.matmul(p, v), [0, 2, 1, 3]), [0, 0, attn])
        x = net.layernorm(net.add(x, net.linear(ctx, attn, hidden)), hidden)
        f = net.linear(net.linear(x, hidden, ffn_kept, act="gelu"), ffn_kept, hidden)
        x = net.layernorm(net.add(x, f), hidden)
    return net


def mlp(features: Sequence[int] = (1024, 2048, 2048, 1000), inner: float = 1.0, seed: int = 0) -> Net:
    net = Net("mlp", (features[0],), rng=np.random.default_rng(seed))
    x = net.input_name
    sizes = [features[0]] + [_ch(f, inner) for f in features[1:-1]] + [features[-1]]
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        x = net.linear(x, sizes[i], sizes[i + 1], act="none" if last else "relu")
    return net


def build(name: str, quick: bool = False, inner: float = 1.0) -> Net:
    """The benchmark model ``name``; ``quick`` gives a tiny version for the smoke test."""
    if name == "resnet18":
        return resnet18(32, 0.125, inner, 10) if quick else resnet18(inner=inner)
    if name == "mobilenet_v2":
        return mobilenet_v2(32, 0.25, inner, 10) if quick else mobilenet_v2(inner=inner)
    if name == "bert_encoder":
        return bert_encoder(8, 32, 2, 64, 2, inner) if quick else bert_encoder(inner=inner)
    if name == "mlp":
        return mlp((64, 96, 96, 10), inner) if quick else mlp(inner=inner)
    raise ValueError(f"unknown benchmark model {name!r}; choose from {MODEL_NAMES}")


MODEL_NAMES = ("resnet18", "mobilenet_v2", "bert_encoder", "mlp")


def magnitude_prune(net: Net, sparsity: float, block: tuple[int, int] = (1, 1)) -> Net:
    """Zero the ``sparsity`` share of smallest-magnitude entries of every prunable weight, in place;
    ``block=(4, 1)``: of its 4x1 blocks (four output channels x one input position, ranked by
    their L2 norm), as ``sparsert.prune.magnitude_prune(block=...)`` does."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if tuple(block) != (1, 1):
        from sparsert._blocks import block_magnitude_mask

        for w in net.prunable_weights():
            mask = block_magnitude_mask(w, sparsity, tuple(block))
            if mask is not None:
                w[~mask] = 0.0
        return net
    for w in net.prunable_weights():
        k = int(round(sparsity * w.size))
        if k == 0:
            continue
        flat = w.reshape(-1)
        cut = np.argpartition(np.abs(flat), k - 1)[:k]
        flat[cut] = 0.0
    return net


# ---------------------------------------------------------------------------
# Emitters


def to_spr(net: Net, storage: str = "auto") -> bytes:
    """``.spr`` bytes; prunable weights use ``storage`` ("auto": CSR at >= 50% zeros)."""
    from sparsert import GraphBuilder

    b = GraphBuilder(net.name, producer="benchmarks.models")
    names = {net.input_name: b.input(net.input_name, (-1, *net.input_shape))}
    for i, op in enumerate(net.ops):
        ins = [names[t] for t in op.inputs]
        a = op.attrs
        if op.kind == "conv":
            w = b.constant(f"{op.output}.w", op.weights["w"], storage=storage if op.prunable else "dense")
            bias = b.constant(f"{op.output}.b", op.weights["b"])
            p = a["pad"]
            out = b.node(
                "Conv",
                [ins[0], w, bias, *ins[1:]],
                {
                    "strides": [a["stride"]] * 2,
                    "pads": [p] * 4,
                    "group": a["groups"],
                    "activation": a["act"],
                },
                name=op.output,
            )
        elif op.kind == "linear":
            w = b.constant(f"{op.output}.w", op.weights["w"], storage=storage)
            bias = b.constant(f"{op.output}.b", op.weights["b"])
            out = b.node("Linear", [ins[0], w, bias], {"activation": a["act"]}, name=op.output)
        elif op.kind == "maxpool":
            out = b.node(
                "MaxPool",
                ins,
                {"kernel_shape": [a["k"]] * 2, "strides": [a["stride"]] * 2, "pads": [a["pad"]] * 4},
                name=op.output,
            )
        elif op.kind == "gap_flatten":
            out = b.node("Flatten", [b.node("GlobalAveragePool", ins)], {"axis": 1}, name=op.output)
        elif op.kind == "add":
            out = b.node("Add", ins, name=op.output)
        elif op.kind == "scale":
            out = b.node("Mul", [ins[0], b.constant(f"{op.output}.c", op.weights["c"])], name=op.output)
        elif op.kind == "layernorm":
            g = b.constant(f"{op.output}.g", op.weights["g"])
            beta = b.constant(f"{op.output}.b", op.weights["b"])
            out = b.node("LayerNormalization", [ins[0], g, beta], {"axis": -1, "epsilon": a["eps"]}, name=op.output)
        elif op.kind == "matmul":
            out = b.node("MatMul", ins, name=op.output)
        elif op.kind == "softmax":
            out = b.node("Softmax", ins, {"axis": -1}, name=op.output)
        elif op.kind == "reshape":
            out = b.node("Reshape", ins, {"shape": a["shape"]}, name=op.output)
        elif op.kind == "transpose":
            out = b.node("Transpose", ins, {"perm": a["perm"]}, name=op.output)
        else:  # pragma: no cover - the builders above make only these kinds
            raise ValueError(f"op {i} has unknown kind {op.kind!r}")
        names[op.output] = out
    b.output(names[net.output], "y")
    return b.to_bytes()


def to_onnx(net: Net, opset: int = 20) -> bytes:
    """ONNX bytes with a dynamic batch dim (needs the ``onnx`` package)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def act(x: str, kind: str, out: str) -> str:
        if kind == "none":
            return x
        if kind == "relu":
            nodes.append(helper.make_node("Relu", [x], [out]))
        elif kind == "relu6":
            lo = init(f"{out}.min", np.array(0.0, np.float32))
            hi = init(f"{out}.max", np.array(6.0, np.float32))
            nodes.append(helper.make_node("Clip", [x, lo, hi], [out]))
        elif kind == "gelu":
            nodes.append(helper.make_node("Gelu", [x], [out]))
        return out

    for op in net.ops:
        a, o = op.attrs, op.output
        if op.kind == "conv":
            p = a["pad"]
            w, bias = init(f"{o}.w", op.weights["w"]), init(f"{o}.b", op.weights["b"])
            k = op.weights["w"].shape[-1]
            y = f"{o}.conv"
            nodes.append(
                helper.make_node(
                    "Conv",
                    [op.inputs[0], w, bias],
                    [y],
                    kernel_shape=[k, k],
                    strides=[a["stride"]] * 2,
                    pads=[p] * 4,
                    group=a["groups"],
                )
            )
            if len(op.inputs) > 1:
                nodes.append(helper.make_node("Add", [y, op.inputs[1]], [f"{o}.add"]))
                y = f"{o}.add"
            y = act(y, a["act"], f"{o}.act")
            nodes.append(helper.make_node("Identity", [y], [o]))
        elif op.kind == "linear":
            wt = init(f"{o}.wt", op.weights["w"].T)
            bias = init(f"{o}.b", op.weights["b"])
            nodes.append(helper.make_node("MatMul", [op.inputs[0], wt], [f"{o}.mm"]))
            nodes.append(helper.make_node("Add", [f"{o}.mm", bias], [f"{o}.add"]))
            nodes.append(helper.make_node("Identity", [act(f"{o}.add", a["act"], f"{o}.act")], [o]))
        elif op.kind == "maxpool":
            nodes.append(
                helper.make_node(
                    "MaxPool",
                    op.inputs,
                    [o],
                    kernel_shape=[a["k"]] * 2,
                    strides=[a["stride"]] * 2,
                    pads=[a["pad"]] * 4,
                )
            )
        elif op.kind == "gap_flatten":
            nodes.append(helper.make_node("GlobalAveragePool", op.inputs, [f"{o}.gap"]))
            nodes.append(helper.make_node("Flatten", [f"{o}.gap"], [o], axis=1))
        elif op.kind == "add":
            nodes.append(helper.make_node("Add", op.inputs, [o]))
        elif op.kind == "scale":
            nodes.append(helper.make_node("Mul", [op.inputs[0], init(f"{o}.c", op.weights["c"])], [o]))
        elif op.kind == "layernorm":
            nodes.append(
                helper.make_node(
                    "LayerNormalization",
                    [op.inputs[0], init(f"{o}.g", op.weights["g"]), init(f"{o}.b", op.weights["b"])],
                    [o],
                    axis=-1,
                    epsilon=a["eps"],
                )
            )
        elif op.kind == "matmul":
            nodes.append(helper.make_node("MatMul", op.inputs, [o]))
        elif op.kind == "softmax":
            nodes.append(helper.make_node("Softmax", op.inputs, [o], axis=-1))
        elif op.kind == "reshape":
            shape = init(f"{o}.shape", np.array(a["shape"], np.int64))
            nodes.append(helper.make_node("Reshape", [op.inputs[0], shape], [o]))
        elif op.kind == "transpose":
            nodes.append(helper.make_node("Transpose", op.inputs, [o], perm=a["perm"]))
        else:  # pragma: no cover
            raise ValueError(f"unknown op kind {op.kind!r}")
    x = helper.make_tensor_value_info(net.input_name, TensorProto.FLOAT, ["batch", *net.input_shape])
    y = helper.make_tensor_value_info(net.output, TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, net.name, [x], [y], initializer=inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="benchmarks.models"
    )
    model.ir_version = min(model.ir_version, 10)
    return model.SerializeToString()


def to_torch(net: Net) -> Any:
    """An eager ``torch.nn.Module`` running the same ops with ``torch.nn.functional``."""
    import torch
    import torch.nn.functional as F

    acts = {"none": lambda t: t, "relu": F.relu, "relu6": F.relu6, "gelu": F.gelu}

    class TorchNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.params = torch.nn.ParameterDict()
            for op in net.ops:
                for key, value in op.weights.items():
                    self.params[f"{op.output}_{key}"] = torch.nn.Parameter(
                        torch.from_numpy(value.copy()), requires_grad=False
                    )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            env = {net.input_name: x}
            p = self.params
            for op in net.ops:
                a, o = op.attrs, op.output
                ins = [env[t] for t in op.inputs]
                if op.kind == "conv":
                    y = F.conv2d(ins[0], p[f"{o}_w"], p[f"{o}_b"], a["stride"], a["pad"], 1, a["groups"])
                    if len(ins) > 1:
                        y = y + ins[1]
                    y = acts[a["act"]](y)
                elif op.kind == "linear":
                    y = acts[a["act"]](F.linear(ins[0], p[f"{o}_w"], p[f"{o}_b"]))
                elif op.kind == "maxpool":
                    y = F.max_pool2d(ins[0], a["k"], a["stride"], a["pad"])
                elif op.kind == "gap_flatten":
                    y = torch.flatten(F.adaptive_avg_pool2d(ins[0], 1), 1)
                elif op.kind == "add":
                    y = ins[0] + ins[1]
                elif op.kind == "scale":
                    y = ins[0] * p[f"{o}_c"]
                elif op.kind == "layernorm":
                    y = F.layer_norm(ins[0], ins[0].shape[-1:], p[f"{o}_g"], p[f"{o}_b"], a["eps"])
                elif op.kind == "matmul":
                    y = torch.matmul(ins[0], ins[1])
                elif op.kind == "softmax":
                    y = torch.softmax(ins[0], -1)
                elif op.kind == "reshape":
                    shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(a["shape"])]
                    y = ins[0].reshape(shape)
                elif op.kind == "transpose":
                    y = ins[0].permute(a["perm"])
                else:  # pragma: no cover
                    raise ValueError(f"unknown op kind {op.kind!r}")
                env[o] = y
            return env[net.output]

    return TorchNet().eval()
