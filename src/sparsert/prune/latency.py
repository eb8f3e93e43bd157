"""Pruning for the runtime: per-layer latency tables measured on this machine, and pruning to a
latency budget (see docs/pruning.md, "Pruning to a latency budget").

:func:`latency_table` times every prunable layer of a model alone — its own weight shape, input
shape and attributes, magnitude-pruned to each sparsity of a grid — with the sparsert runtime
itself, which picks sparse or dense kernels per layer as it will when the whole model runs.
Results are cached per CPU, thread count and layer shape, so a second call is instant.

:func:`budget_prune` chooses each layer's sparsity so that the predicted model time (the layers'
measured times plus the rest of the model, measured end to end) meets a target in ms or a
speedup, at the least expected accuracy cost: it repeatedly takes the step (a layer to a higher
grid sparsity) that saves the most time per unit of cost. A step that saves no time — a layer
still below its sparse/dense crossover — is never taken, so no sparsity is spent where the
runtime would multiply the zeros anyway.

Unlike the rest of :mod:`sparsert.prune`, this module needs the compiled runtime (imported when
a function is called).
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ._select import Patterns, select_layers
from .magnitude import magnitude_prune

GRID = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
TYPES = (nn.Linear, nn.Conv2d)
_CACHE_VERSION = 1
_GAIN = 0.97  # a sparsity "gains time" when the layer runs in under 97% of its dense time


# --------------------------------------------------------------------------- the table


@dataclass
class LayerLatency:
    """Measured time of one layer alone at each sparsity of the grid (median ms)."""

    name: str
    op: str
    weight_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    times_ms: dict[float, float]

    @property
    def dense_ms(self) -> float:
        return self.times_ms[min(self.times_ms)]

    @property
    def crossover(self) -> float | None:
        """The lowest grid sparsity from which every higher one runs faster than dense (None if
        none does: the layer should stay dense)."""
        best = None
        for s in sorted(self.times_ms, reverse=True):
            if s > 0 and self.times_ms[s] < _GAIN * self.dense_ms:
                best = s
            elif s > 0:
                break
        return best

    def time_at(self, sparsity: float) -> float:
        """Piecewise-linear between grid points (flat beyond the grid)."""
        points = sorted(self.times_ms.items())
        if sparsity <= points[0][0]:
            return points[0][1]
        for (s0, t0), (s1, t1) in zip(points, points[1:]):
            if sparsity <= s1:
                return t0 + (t1 - t0) * (sparsity - s0) / (s1 - s0)
        return points[-1][1]


@dataclass
class LatencyTable:
    layers: list[LayerLatency]
    threads: int
    cpu: str
    sparsities: tuple[float, ...]
    block: tuple[int, int] = (1, 1)  # the pruning unit the layers were timed with

    def __iter__(self):  # noqa: ANN204
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, name: str) -> LayerLatency:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def table(self) -> str:
        head = ["layer", "op", "weight", "input"] + [f"{s:.0%}" for s in self.sparsities] + ["crossover"]
        rows = []
        for layer in self.layers:
            cross = layer.crossover
            rows.append(
                [layer.name, layer.op, "x".join(map(str, layer.weight_shape)), "x".join(map(str, layer.input_shape))]
                + [f"{layer.times_ms[s]:.3f}" for s in self.sparsities]
                + ["stay dense" if cross is None else f"{cross:.0%}"]
            )
        widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
        lines = ["  ".join(str(c).rjust(w) if i >= 4 else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in [head, ["-" * w for w in widths], *rows]]
        unit = "unstructured" if self.block == (1, 1) else f"{self.block[0]}x{self.block[1]} blocks"
        return (f"per-layer latency (ms, median; {unit}; {self.threads} thread(s); {self.cpu})\n"
                + "\n".join(lines))

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads, "cpu": self.cpu, "sparsities": list(self.sparsities),
            "block": list(self.block),
            "layers": [{"name": ly.name, "op": ly.op, "weight_shape": list(ly.weight_shape),
                        "input_shape": list(ly.input_shape), "crossover": ly.crossover,
                        "times_ms": {f"{s:g}": t for s, t in ly.times_ms.items()}} for ly in self.layers],
        }

    def plot(self, path: str | os.PathLike[str]) -> str:
        """Each layer's time relative to its dense time against sparsity (needs matplotlib)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4.5))
        for layer in self.layers:
            xs = [100 * s for s in self.sparsities]
            ax.plot(xs, [layer.times_ms[s] / layer.dense_ms for s in self.sparsities], "o-", ms=3,
                    label=layer.name if len(self.layers) <= 12 else None)
        ax.axhline(1.0, color="k", lw=0.8, ls="--", label="dense time")
        unit = "" if self.block == (1, 1) else f", {self.block[0]}x{self.block[1]} blocks"
        ax.set(xlabel="weight sparsity (%)", ylabel="time / dense time",
               title=f"per-layer latency{unit}, {self.threads} thread(s): {self.cpu}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(os.fspath(path), dpi=100)
        plt.close(fig)
        return os.fspath(path)


def _cpu() -> str:
    import sparsert

    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name or 'unknown CPU'}; kernels {sparsert.cpu_features()}"


def cache_dir() -> str:
    """``$SPARSERT_CACHE_DIR``, else ``$XDG_CACHE_HOME/sparsert``, else ``~/.cache/sparsert``."""
    explicit = os.environ.get("SPARSERT_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sparsert")


def _cache_path() -> str:
    return os.path.join(cache_dir(), f"latency-v{_CACHE_VERSION}.json")


def _load_cache() -> dict[str, float]:
    try:
        with open(_cache_path()) as f:
            data = json.load(f)
        return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError, TypeError):
        return {}  # no cache yet, or a broken one: measure again


def _save_cache(entries: dict[str, float]) -> None:
    from sparsert.format import write_bytes

    try:
        os.makedirs(cache_dir(), exist_ok=True)
        write_bytes(json.dumps(entries, sort_keys=True).encode(), _cache_path())  # atomic, user's umask
    except OSError as e:
        warnings.warn(f"could not write the latency cache ({e}); timings are kept for this call only",
                      stacklevel=3)


def _layer_inputs(model: nn.Module, example_inputs: Any, names: list[str]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())
    hooks = []
    for name in names:
        def hook(_m: nn.Module, args: tuple, _out: Any, name: str = name) -> None:
            if name not in shapes and args and isinstance(args[0], torch.Tensor):
                shapes[name] = tuple(int(d) for d in args[0].shape)
        hooks.append(modules[name].register_forward_hook(hook))
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    return shapes


def _effective_weight(module: nn.Module) -> np.ndarray:
    from sparsert.exporter import effective_param

    return np.asarray(effective_param(module, "weight").detach().cpu().numpy(), dtype=np.float32)


def _layer_spec(module: nn.Module, input_shape: tuple[int, ...]) -> tuple[str, dict[str, Any], tuple[int, ...]]:
    if isinstance(module, nn.Conv2d):
        from sparsert.exporter._modules import conv2d_attrs

        return "Conv", conv2d_attrs(module), input_shape
    rows = int(np.prod(input_shape[:-1])) if len(input_shape) > 1 else 1
    return "Linear", {}, (rows, int(input_shape[-1]))


def _pruned(w: np.ndarray, sparsity: float, block: tuple[int, int] = (1, 1)) -> np.ndarray:
    if block != (1, 1):
        from sparsert._blocks import block_magnitude_mask

        mask = block_magnitude_mask(w, sparsity, block)
        return w if mask is None else np.where(mask, w, 0.0).astype(np.float32)
    flat = np.abs(w).reshape(-1)
    k = int(math.floor(sparsity * flat.size + 0.5))
    if k <= 0:
        return w
    out = w.copy().reshape(-1)
    out[np.argpartition(flat, k - 1)[:k]] = 0.0
    return out.reshape(w.shape)


def _time_layer(op: str, attrs: dict[str, Any], w: np.ndarray, bias: np.ndarray | None, x_shape: tuple[int, ...],
                threads: int, budget_s: float) -> float:
    from sparsert.graph import GraphBuilder

    b = GraphBuilder("layer")
    x = b.input("x", x_shape)
    ins = [x, b.constant("w", w, storage="auto")]
    if bias is not None:
        ins.append(b.constant("b", bias))
    b.output(b.node(op, ins, attrs), "y")
    model = b.load(threads=threads)
    data = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    for _ in range(2):
        model.run(data)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or (len(times) < 50 and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        model.run(data)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def latency_table(
    model: nn.Module,
    example_inputs: Any,
    sparsities: Sequence[float] = GRID,
    threads: int = 1,
    types: Sequence[type[nn.Module]] = TYPES,
    include: Patterns = None,
    exclude: Patterns = None,
    cache: bool = True,
    progress: bool = True,
    budget_s: float = 0.1,
    block: tuple[int, int] = (1, 1),
) -> LatencyTable:
    """Times every selected layer (``nn.Linear``, ``nn.Conv2d`` with groups 1 by default) alone
    with the sparsert runtime at each sparsity of ``sparsities`` (0 is always included), at the
    input shape it sees for ``example_inputs`` and the given thread count. Cached per CPU and
    layer shape in :func:`cache_dir` unless ``cache=False``. ``block=(4, 1)`` times the layers
    magnitude-pruned in 4x1 blocks (as ``magnitude_prune(block=...)`` prunes them; the runtime's
    block kernels then run them) instead of unstructured.
    """
    from sparsert._blocks import check_block

    block = check_block(block)
    import sparsert
    from sparsert.runtime import _threads

    grid = tuple(sorted({0.0, *(float(s) for s in sparsities)}))
    if any(not 0.0 <= s < 1.0 for s in grid):
        raise ValueError(f"sparsities must be in [0, 1), got {list(sparsities)}")
    resolved = min(_threads(threads) or sparsert.default_threads(), sparsert.default_threads())
    layers = [(n, m) for n, m in select_layers(model, types, include, exclude)
              if not (isinstance(m, nn.Conv2d) and m.groups != 1)]
    if not layers:
        raise ValueError("no layer to time (nn.Linear / nn.Conv2d with groups=1; check types/include/exclude)")
    shapes = _layer_inputs(model, example_inputs, [n for n, _ in layers])
    cpu = _cpu()
    entries = _load_cache() if cache else {}
    dirty = False
    out: list[LayerLatency] = []
    from tqdm.auto import tqdm

    bar = tqdm(layers, desc="timing layers", disable=not progress, leave=False)
    for name, module in bar:
        if name not in shapes:
            continue  # not called by forward() on this input
        op, attrs, x_shape = _layer_spec(module, shapes[name])
        w = _effective_weight(module)
        bias = None if module.bias is None else module.bias.detach().cpu().numpy().astype(np.float32)
        times: dict[float, float] = {}
        for s in grid:
            parts = [cpu, resolved, op, list(w.shape), list(x_shape), attrs, round(s, 4), bias is not None]
            if block != (1, 1) and s > 0:  # the dense point is the same either way
                parts.append(list(block))
            key = json.dumps(parts, sort_keys=True)
            if key not in entries:
                entries[key] = _time_layer(op, attrs, _pruned(w, s, block), bias, x_shape, resolved, budget_s)
                dirty = True
            times[s] = entries[key]
        out.append(LayerLatency(name, op, tuple(w.shape), tuple(shapes[name]), times))
    if cache and dirty:
        _save_cache(entries)
    return LatencyTable(out, resolved, cpu, grid, block)


# --------------------------------------------------------------------------- budget pruning


def _load_runtime(model: nn.Module, inputs: tuple, threads: int) -> Any:
    import sparsert

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.spr")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sparsert.export(model, inputs if len(inputs) > 1 else inputs[0], path)
            return sparsert.load(path, threads=threads)


def _time_runtimes(runtimes: list[Any], feeds: list[np.ndarray], rounds: int, budget_s: float) -> list[float]:
    """Each runtime's lowest round median in ms; every round runs each runtime in turn (a busy
    period of a shared machine raises some rounds, not all, and hits all runtimes alike)."""
    for rt in runtimes:
        for _ in range(2):
            rt.run(feeds)
    best = [math.inf] * len(runtimes)
    share = budget_s / rounds / len(runtimes)
    for _ in range(rounds):
        for i, rt in enumerate(runtimes):
            times = []
            start = time.perf_counter()
            while len(times) < 3 or (len(times) < 30 and time.perf_counter() - start < share):
                t0 = time.perf_counter()
                rt.run(feeds)
                times.append((time.perf_counter() - t0) * 1e3)
            best[i] = min(best[i], float(np.median(times)))
    return best


def measure_ms(model: nn.Module, example_inputs: Any, threads: int = 1, rounds: int = 5, budget_s: float = 1.0) -> float:
    """End-to-end ms of ``model`` exported to sparsert and run on ``example_inputs``: the lowest of
    ``rounds`` round medians (a busy period of a shared machine raises some rounds, not all)."""
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    runtime = _load_runtime(model, inputs, threads)
    return _time_runtimes([runtime], [t.detach().cpu().numpy() for t in inputs], rounds, budget_s)[0]


def measure_pair_ms(first: nn.Module, second: nn.Module, example_inputs: Any, threads: int = 1,
                    rounds: int = 7, budget_s: float = 2.0) -> tuple[float, float]:
    """:func:`measure_ms` of two models timed together, round by round in turn, so that their
    ratio holds on a machine whose speed drifts."""
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    runtimes = [_load_runtime(m, inputs, threads) for m in (first, second)]
    a, b = _time_runtimes(runtimes, [t.detach().cpu().numpy() for t in inputs], rounds, budget_s)
    return a, b


def _magnitude_costs(layers: list[tuple[str, nn.Module]], grid: tuple[float, ...],
                     block: tuple[int, int] = (1, 1)) -> dict[str, dict[float, float]]:
    """The share of each layer's own squared weight magnitude that a sparsity removes: a first-order
    estimate of the relative error it adds to the layer's output, comparable across layers whatever
    their weight scale (a global magnitude ranking would strip whole small layers such as the first
    conv, whose weights are large in effect but few)."""
    costs: dict[str, dict[float, float]] = {}
    from sparsert._blocks import block_scores

    for name, module in layers:
        w = _effective_weight(module)
        # squared magnitude per pruning unit (a block's sum of squares)
        sq = np.sort(block_scores(w, block).reshape(-1) ** 2 if block != (1, 1)
                     else (w.astype(np.float64) ** 2).reshape(-1))
        prefix = np.concatenate([[0.0], np.cumsum(sq)])
        total = prefix[-1] or 1.0
        costs[name] = {s: float(prefix[int(math.floor(s * sq.size + 0.5))]) / total for s in grid}
    return costs


def _leaf_weight(module: nn.Module) -> torch.Tensor:
    """The trainable tensor behind ``module.weight``: ``weight_orig`` (torch.nn.utils.prune), the
    parametrization's ``original``, or ``weight``.  Where a mask keeps a weight, its gradient equals
    the gradient of the effective weight; where it masks one, the weight is 0 and costs nothing."""
    orig = getattr(module, "weight_orig", None)
    if isinstance(orig, torch.Tensor):
        return orig
    param = getattr(module, "parametrizations", None)
    if param is not None and "weight" in param:
        return param["weight"].original
    return module.weight


def _fisher_costs(model: nn.Module, layers: list[tuple[str, nn.Module]], grid: tuple[float, ...],
                  loader: Any, loss_fn: Callable[[Any, Any], torch.Tensor], batches: int,
                  block: tuple[int, int] = (1, 1)) -> dict[str, dict[float, float]]:
    """Expected loss increase of each layer's magnitude pruning to each sparsity: the second-order
    Taylor term ``1/2 F_ii w_i^2`` (optimal brain damage, with the empirical Fisher ``F_ii`` -- the
    mean squared gradient over ``batches`` batches -- for the Hessian's diagonal), summed over the
    weights (blocks) that magnitude pruning removes at that sparsity.  Unlike ``"magnitude"`` the
    costs are in units of the loss, so they compare across layers: a small layer the loss depends
    on is expensive to prune, a large redundant one cheap."""
    from sparsert._blocks import block_scores

    if not isinstance(batches, int) or isinstance(batches, bool) or batches < 1:
        raise ValueError(f"batches must be a positive int, got {batches!r}")
    leaves = {name: _leaf_weight(module) for name, module in layers}
    sums = {name: torch.zeros(t.shape, dtype=torch.float64) for name, t in leaves.items()}
    was_training = model.training
    model.eval()  # BatchNorm statistics and dropout stay as they are
    used = 0
    flags = {name: t.requires_grad for name, t in leaves.items()}
    try:
        for t in leaves.values():
            t.requires_grad_(True)
        for batch in loader:
            if used >= batches:
                break
            if not isinstance(batch, (list, tuple)) or len(batch) < 2:
                raise ValueError("saliency='fisher' needs a loader yielding (inputs, targets) pairs")
            inputs, targets = batch[0], batch[1]
            model.zero_grad(set_to_none=True)
            for t in leaves.values():
                t.grad = None
            loss = loss_fn(model(inputs), targets)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise ValueError("loss_fn must return a scalar tensor")
            loss.backward()
            for name, t in leaves.items():
                if t.grad is not None:
                    sums[name] += t.grad.detach().double().cpu() ** 2
            used += 1
    finally:
        for name, t in leaves.items():
            t.grad = None
            t.requires_grad_(flags[name])
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if used == 0:
        raise ValueError("the loader given for saliency='fisher' yielded no batch")
    costs: dict[str, dict[float, float]] = {}
    for name, module in layers:
        w = _effective_weight(module).astype(np.float64)
        per_weight = 0.5 * (sums[name].numpy().reshape(w.shape) / used) * w * w
        if block != (1, 1):  # block order and block sums, as magnitude_prune ranks them
            order_key = block_scores(w, block).reshape(-1)
            unit_cost = (block_scores(np.sqrt(per_weight), block) ** 2).reshape(-1)
        else:
            order_key, unit_cost = np.abs(w).reshape(-1), per_weight.reshape(-1)
        prefix = np.concatenate([[0.0], np.cumsum(unit_cost[np.argsort(order_key, kind="stable")])])
        costs[name] = {s: float(prefix[int(math.floor(s * unit_cost.size + 0.5))]) for s in grid}
    return costs


def _evaluated_costs(model: nn.Module, layers: list[tuple[str, nn.Module]], grid: tuple[float, ...],
                     evaluate: Callable[[nn.Module], float], progress: bool) -> dict[str, dict[float, float]]:
    """Metric drop when each layer alone is pruned to each sparsity (on a copy of the model)."""
    from tqdm.auto import tqdm

    base = float(evaluate(model))
    costs: dict[str, dict[float, float]] = {}
    for name, _ in tqdm(layers, desc="sensitivity", disable=not progress, leave=False):
        costs[name] = {0.0: 0.0}
        for s in grid[1:]:
            trial = copy.deepcopy(model)
            magnitude_prune(trial, sparsity={name: s}, include=[name])
            costs[name][s] = max(0.0, base - float(evaluate(trial)))
    return costs


def _prune_to(model: nn.Module, choice: dict[str, float], types: Sequence[type[nn.Module]],
              block: tuple[int, int] = (1, 1)) -> None:
    wanted = {n: s for n, s in choice.items() if s > 0}
    if wanted:
        magnitude_prune(model, sparsity=wanted, types=types, include=list(wanted), block=block)


class BudgetUnreachableError(ValueError):
    """A latency budget that no plan on the grid meets; ``.result`` is the fastest plan (not applied)."""

    def __init__(self, message: str, result: BudgetResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class BudgetResult:
    """What :func:`budget_prune` chose and what it measured."""

    sparsities: dict[str, float]  # layer -> sparsity (0 = left dense)
    target_ms: float
    dense_ms: float
    predicted_ms: float
    measured_ms: float | None
    met: bool
    latency: LatencyTable
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        return None if self.measured_ms is None else self.dense_ms / self.measured_ms

    def table(self) -> str:
        head = ["layer", "sparsity", "dense ms", "ms", "crossover"]
        body = [[r["name"], f"{r['sparsity']:.0%}", f"{r['dense_ms']:.3f}", f"{r['ms']:.3f}",
                 "stay dense" if r["crossover"] is None else f"{r['crossover']:.0%}"] for r in self.rows]
        return budget_table(head, body, self, f"{self.latency.threads} thread(s)")


def budget_table(head: list[str], body: list[list[str]], result: Any, where: str) -> str:
    """A plan's rows (first column left-aligned) and its target / dense / predicted / measured line."""
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head, ["-" * w for w in widths], *body]]
    measured = "not measured" if result.measured_ms is None else f"measured {result.measured_ms:.3f} ms"
    return "\n".join(lines + [
        f"target {result.target_ms:.3f} ms, dense {result.dense_ms:.3f} ms, predicted {result.predicted_ms:.3f} ms, "
        f"{measured} ({'met' if result.met else 'NOT met'}; {where})"])


def budget_prune(
    model: nn.Module,
    example_inputs: Any,
    target_ms: float | None = None,
    speedup: float | None = None,
    threads: int = 1,
    saliency: str | Callable[[str, nn.Module, float], float] = "magnitude",
    evaluate: Callable[[nn.Module], float] | None = None,
    loader: Any = None,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    batches: int = 8,
    sparsities: Sequence[float] = GRID,
    types: Sequence[type[nn.Module]] = TYPES,
    include: Patterns = None,
    exclude: Patterns = None,
    apply: bool = True,
    measure: bool = True,
    table: LatencyTable | None = None,
    progress: bool = True,
    block: tuple[int, int] = (1, 1),
) -> BudgetResult:
    """Chooses per-layer sparsities that meet ``target_ms`` (end to end, sparsert, at
    ``threads``) or ``speedup`` over the model's own sparsert time, with the least expected
    accuracy cost, and (``apply=True``) magnitude-prunes the model to them in place.

    saliency: ``"magnitude"`` (the share of each layer's squared weight magnitude removed; needs
        no data), ``"fisher"`` (the expected loss increase ``1/2 F w^2`` of the removed weights, with
        the empirical Fisher from ``batches`` batches of ``loader`` -- ``(inputs, targets)`` pairs --
        and ``loss_fn(model(inputs), targets)``; comparable across layers, recommended when data is
        at hand) or a function ``(layer_name, module, sparsity) -> cost``; ``evaluate``: a metric of the model (higher is
        better, e.g. validation accuracy): the cost becomes its measured drop when the layer alone
        is pruned (slower, more faithful). To prune gradually, call with ``apply=False`` and pass
        ``result.sparsities`` to :func:`iterative_prune` as ``targets=``.
    Layers are only pruned to sparsities that make them faster than dense on this machine.
    block: the pruning unit, as in :func:`magnitude_prune` (``(4, 1)``: 4x1 blocks, timed with the
        runtime's block kernels); pass the same ``block=`` to :func:`iterative_prune` with
        ``targets=``.
    """
    from sparsert._blocks import check_block

    block = check_block(block)
    if table is not None and table.block != block:
        raise ValueError(f"table was timed with block={table.block}, not block={block}")
    if (target_ms is None) == (speedup is None):
        raise ValueError("give exactly one of target_ms= (a latency in ms) or speedup= (over the dense model)")
    if target_ms is not None and not (isinstance(target_ms, (int, float)) and target_ms > 0):
        raise ValueError(f"target_ms must be a positive number, got {target_ms!r}")
    if speedup is not None and not (isinstance(speedup, (int, float)) and speedup >= 1):
        raise ValueError(f"speedup must be a number >= 1, got {speedup!r}")
    if not callable(saliency) and saliency not in ("magnitude", "fisher"):
        raise ValueError(f"saliency must be 'magnitude', 'fisher' or a function, got {saliency!r}")
    if saliency == "fisher" and evaluate is None and (loader is None or loss_fn is None):
        raise ValueError("saliency='fisher' needs loader= (yielding (inputs, targets)) and loss_fn=")
    lat = table or latency_table(model, example_inputs, sparsities, threads, types, include, exclude,
                                 progress=progress, block=block)
    grid = lat.sparsities
    modules = dict(model.named_modules())
    layers = [(ly.name, modules[ly.name]) for ly in lat]
    dense_ms = measure_ms(model, example_inputs, lat.threads)
    target = float(target_ms) if target_ms is not None else dense_ms / float(speedup)
    if evaluate is not None:
        costs = _evaluated_costs(model, layers, grid, evaluate, progress)
    elif callable(saliency):
        costs = {n: {s: float(saliency(n, m, s)) if s > 0 else 0.0 for s in grid} for n, m in layers}
    elif saliency == "fisher":
        costs = _fisher_costs(model, layers, grid, loader, loss_fn, batches, block)
    else:
        costs = _magnitude_costs(layers, grid, block)

    # The greedy path: from dense, repeatedly take the step (a layer to a higher grid sparsity)
    # that saves the most predicted time per unit of cost, until every layer is as fast as the
    # grid allows.  The order does not depend on the target; the target picks how far to go.
    # A step that saves no time -- a layer still below its crossover -- is never taken.
    other_ms = max(0.0, dense_ms - sum(ly.dense_ms for ly in lat))  # activations, pooling, ...
    level = {ly.name: 0 for ly in lat}  # index into grid
    path: list[dict[str, int]] = [dict(level)]
    while True:
        best: tuple[float, str, int] | None = None
        for ly in lat:
            i = level[ly.name]
            t_now, c_now = ly.times_ms[grid[i]], costs[ly.name][grid[i]]
            for j in range(i + 1, len(grid)):
                saved = t_now - ly.times_ms[grid[j]]
                if ly.times_ms[grid[j]] >= _GAIN * ly.dense_ms or saved <= 0:
                    continue  # below the crossover or no faster: never spend sparsity here
                ratio = saved / (costs[ly.name][grid[j]] - c_now + 1e-12)
                if best is None or ratio > best[0]:
                    best = (ratio, ly.name, j)
        if best is None:
            break
        level[best[1]] = best[2]
        path.append(dict(level))

    def plan_of(k: int) -> dict[str, float]:
        return {name: grid[i] for name, i in path[k].items()}

    def predicted(k: int) -> float:
        return other_ms + sum(ly.times_ms[grid[path[k][ly.name]]] for ly in lat)

    times: dict[int, float] = {0: dense_ms}

    def measured(k: int) -> float:
        # the plan on a pruned copy, timed together with the dense model (in turn, round by
        # round) and rescaled to the dense time of the start: a shared machine's slow and fast
        # periods then shift both and cancel instead of moving the plan
        if k not in times:
            trial = copy.deepcopy(model)
            _prune_to(trial, plan_of(k), types, block)
            ms, dense_now = measure_pair_ms(trial, model, example_inputs, lat.threads)
            times[k] = ms * dense_ms / dense_now if dense_now > 0 else ms
        return times[k]

    # The layers alone predict each plan's time only roughly (inside the model they cost more or
    # less), so the predicted first plan under the target is measured, then a bisection on the
    # path's measured times (about monotone) finds the least pruned plan that meets it.
    last = len(path) - 1
    first = next((k for k in range(len(path)) if predicted(k) <= target), last)
    ok = (lambda k: measured(k) <= target * 1.05) if measure else (lambda k: predicted(k) <= target)
    if first == 0 or not measure:
        chosen = first
    else:
        lo, hi = 0, None  # plan lo misses the target; plan hi meets it
        if ok(first):
            hi = first
        else:
            lo = first
            if ok(last):
                hi = last
        if hi is not None:
            while hi - lo > 1 and len(times) < 9:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if ok(mid) else (mid, hi)
        chosen = last if hi is None else hi
    choice = plan_of(chosen)
    pred = predicted(chosen)
    measured_ms = times.get(chosen) if measure else None
    if chosen == 0 and measure:
        measured_ms = dense_ms
    reached = (measured_ms if measured_ms is not None else pred) <= target * 1.10
    rows = [{"name": ly.name, "sparsity": choice[ly.name], "dense_ms": ly.dense_ms,
             "ms": ly.times_ms[choice[ly.name]], "crossover": ly.crossover} for ly in lat]
    result = BudgetResult(choice, target, dense_ms, pred, measured_ms, reached, lat, rows)
    if not reached:
        # even every layer at its fastest grid point misses: refuse, leave the model as it is
        best = f"measured {measured_ms:.3f} ms" if measured_ms is not None else f"predicted {pred:.3f} ms"
        fastest = measured_ms if measured_ms is not None else pred
        raise BudgetUnreachableError(
            f"budget_prune: the target {target:.3f} ms is out of reach on this machine at {lat.threads} "
            f"thread(s): the fastest plan on the grid (every layer at its fastest sparsity, up to "
            f"{grid[-1]:.0%}) runs {best} (dense {dense_ms:.3f} ms, {dense_ms / fastest:.2f}x). The model was not "
            f"pruned; ask for target_ms >= {fastest:.3f} (the plan is in this error's .result), or add "
            f"sparsities or block=(4, 1) for faster layers.", result)
    if apply:
        _prune_to(model, choice, types, block)
    return result
