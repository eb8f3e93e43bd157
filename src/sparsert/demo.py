"""``sparsert demo``: prune -> export -> run, end to end, on data that ships with scikit-learn.

1. Digits (8x8 images, 1797 samples, scikit-learn): train a small CNN, then
   * prune it iteratively to 90 % unstructured sparsity (cubic schedule, fine-tuning between steps),
   * separately remove 50 % of its filters (L1 structured pruning, fine-tuning between steps),
   export the three variants to ``.spr``, measure accuracy with the native runtime, file size, and
   batch-1 latency of sparsert next to PyTorch eager and onnxruntime running the same model.
2. A ResNet-18-style network at 224x224 with random weights, dense and magnitude-pruned to 90 %
   (the first conv kept dense): batch-1 latency of sparsert against onnxruntime / PyTorch running
   the dense model. ``--quick`` uses a smaller ResNet at 112x112 and says so.

Everything is seeded: accuracies and sizes are reproducible; latencies are measurements.
Nothing is downloaded. Needs the ``demo`` extra (torch, tqdm, scikit-learn, matplotlib;
onnxruntime and onnx are optional baselines).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

__all__ = ["DemoConfig", "run_demo"]

# An exported model whose output differs from PyTorch by more than this (relative to max|y|) is flagged.
EXPORT_RTOL = 1e-4


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of one demo run (full or ``--quick``)."""

    name: str
    train_epochs: int
    unstructured_steps: int
    structured_steps: int
    fine_tune_epochs: int
    digits_repeats: int
    resnet_blocks: tuple[int, int, int, int]
    resnet_width: int
    resnet_size: int
    resnet_repeats: int
    resnet_label: str


FULL = DemoConfig(
    name="full",
    train_epochs=15,
    unstructured_steps=6,
    structured_steps=3,
    fine_tune_epochs=2,
    digits_repeats=200,
    resnet_blocks=(2, 2, 2, 2),
    resnet_width=64,
    resnet_size=224,
    resnet_repeats=10,
    resnet_label="ResNet-18 (11.7 M params), 224x224",
)
QUICK = DemoConfig(
    name="quick",
    train_epochs=5,
    unstructured_steps=3,
    structured_steps=1,
    fine_tune_epochs=1,
    digits_repeats=30,
    resnet_blocks=(1, 1, 1, 1),
    resnet_width=32,
    resnet_size=112,
    resnet_repeats=5,
    resnet_label="ResNet-10 at half width (1.2 M params), 112x112 -- quick mode, not the full ResNet-18",
)


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (matplotlib is only needed for --out)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _require() -> None:
    packages = {"torch": "torch", "tqdm": "tqdm", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}
    missing = [package for module, package in packages.items() if not _installed(module)]
    if missing:
        raise RuntimeError(f"sparsert demo needs {', '.join(missing)}: pip install 'sparsert[demo]'")


def _optional(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


# --------------------------------------------------------------------------- data and training


class _Batches:
    """Shuffled mini-batches; every pass draws a new order from its own seeded generator."""

    def __init__(self, x: Any, y: Any, batch: int, seed: int) -> None:
        import torch

        self.x, self.y, self.batch = x, y, batch
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        import torch

        order = torch.randperm(len(self.y), generator=self.generator)
        for i in range(0, len(order), self.batch):
            idx = order[i : i + self.batch]
            yield self.x[idx], self.y[idx]

    def __len__(self) -> int:
        return (len(self.y) + self.batch - 1) // self.batch


def _digits(seed: int) -> tuple[Any, Any, Any, Any]:
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()  # bundled with scikit-learn, no download
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    split = int(0.8 * len(y))
    return x[:split], y[:split], x[split:], y[split:]


def _accuracy_torch(model: Any, x: Any, y: Any) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _weight_sparsity(model: Any) -> float:
    """Share of zero weights over every Conv2d / Linear weight (the unshrunk model)."""
    from torch import nn

    zeros = total = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach()
            zeros += int((w == 0).sum())
            total += w.numel()
    return zeros / total if total else 0.0


def _plain_copy(model: Any, example: Any) -> Any:
    """A mask-free copy for the dense baselines: structured removals shrunk away, masks baked in."""
    import sparsert.prune as sp

    info = sp.pruning_info(model)
    work = sp.shrink(model, example) if any(e["kind"] == "structured" for e in info.values()) else model
    work = copy.deepcopy(work)
    sp.finalize(work)
    return work.eval()


# --------------------------------------------------------------------------- timing


_ROUNDS = 3


def _time_ms(fn: Callable[[], Any], warmup: int, repeats: int) -> dict[str, float]:
    """Median, min, max and spread of ``repeats`` calls in :data:`_ROUNDS` rounds (a short busy
    period of the machine shows as spread rather than moving the median)."""
    from sparsert._util import time_calls, timing_stats

    per_round = max(1, -(-repeats // _ROUNDS))
    times: list[float] = []
    for k in range(_ROUNDS):
        times += time_calls(fn, warmup if k == 0 else 1, per_round)
    return timing_stats(times)


def _noisy(*stats: dict[str, float] | None) -> bool:
    from sparsert._util import NOISY_SPREAD

    return any(s is not None and s.get("spread", 0.0) > NOISY_SPREAD for s in stats)


def _ort_session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def _ort_timing(
    model: Any, example: Any, path: str, threads: int, repeats: int, warmup: int, say: Callable[[str], None]
) -> dict[str, float] | None:
    """Export ``model`` to ONNX and time it in onnxruntime; None (with a printed reason) if that fails."""
    try:
        _onnx_export(model, example, path)
        session = _ort_session(path, threads)
        feed = {"x": example.numpy()}
        return _time_ms(lambda: session.run(None, feed), warmup, repeats)
    except Exception as e:  # noqa: BLE001 - the baseline is optional; say why it is missing
        say(f"onnxruntime baseline skipped for {type(model).__name__}: {type(e).__name__}: {e}")
        return None


def _onnx_export(model: Any, example: Any, path: str) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            path,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )


# --------------------------------------------------------------------------- tables


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(c) for c in col) for col in zip(head, *rows)]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def _ms(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "-"
    m = stats["median_ms"]
    return f"{m:.3f}" if m < 10 else f"{m:.1f}"


def _speedup(base: dict[str, float] | None, ours: dict[str, float]) -> str:
    """The ratio of medians, or "noisy" when either timing's spread shows a busy machine: a ratio
    of a disturbed measurement is never published."""
    if base is None:
        return "-"
    return "noisy" if _noisy(base, ours) else f"{base['median_ms'] / ours['median_ms']:.2f}x"


def _speedup_value(base: dict[str, float] | None, ours: dict[str, float]) -> float | None:
    return None if base is None or _noisy(base, ours) else base["median_ms"] / ours["median_ms"]


def _noise_note(cells: list[str]) -> str | None:
    from sparsert._util import NOISY_SPREAD

    if "noisy" not in cells:
        return None
    return (
        f"noisy: a timing varied by more than {NOISY_SPREAD:.0%} (interquartile range / median) over "
        f"{_ROUNDS} rounds, so the machine was busy while measuring; no ratio is given. Run again on a "
        "quiet machine (other programs closed)."
    )


# --------------------------------------------------------------------------- the demo


@dataclass
class _Run:
    """What every phase of one demo run shares."""

    config: DemoConfig
    threads: int
    seed: int
    say: Callable[..., None]
    use_ort: bool
    scratch: str  # temporary folder (ONNX files of the baselines)
    spr_dir: str  # where the .spr files go (--out, or the scratch folder)
    mismatches: list[str]

    def check_export(self, label: str, export: Any) -> None:
        # The runtime must reproduce PyTorch; a mismatch is shown, never hidden behind a table.
        if not export.max_rel_error <= EXPORT_RTOL:
            self.mismatches.append(label)
            self.say(
                f"WARNING: {label}: the .spr output differs from PyTorch (max rel error "
                f"{export.max_rel_error:.3g} > {EXPORT_RTOL:g}); its accuracy and latency are not trustworthy"
            )


def run_demo(
    quick: bool = False,
    out: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    seed: int = 0,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Run the demo, print its tables to ``stream`` (stdout) and return the results as a dict.

    out: a folder (created if needed) that receives digits_{dense,unstructured90,structured50}.spr,
        resnet_{dense,sparse90}.spr, results.json and results.png.
    threads: threads for PyTorch, sparsert and onnxruntime (None or 0: every usable core; more
        than the usable cores is capped to them, as ``sparsert.load``).
    """
    _require()
    import torch

    import sparsert
    from sparsert.runtime import _threads

    stream = stream or sys.stdout
    config = QUICK if quick else FULL
    threads = min(_threads(threads) or sparsert.default_threads(), sparsert.default_threads())
    started = time.perf_counter()
    phases: dict[str, float] = {}
    mark = [started]

    def phase(name: str) -> None:
        now = time.perf_counter()
        phases[name] = round(now - mark[0], 3)
        mark[0] = now

    ort = _optional("onnxruntime")
    onnx_ok = _installed("onnx")

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    out_dir = os.fspath(out) if out is not None else None
    if out_dir is not None:
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise NotADirectoryError(f"--out {out_dir!r} exists and is not a directory")
        os.makedirs(out_dir, exist_ok=True)
    scratch = tempfile.TemporaryDirectory(prefix="sparsert-demo-")

    say(
        f"sparsert demo ({config.name}{': smaller epochs and network, fewer repeats' if quick else ''}), "
        f"seed {seed}, {threads} thread(s), kernels: {sparsert.cpu_features()}"
    )
    if ort is None:
        say("onnxruntime is not installed: its columns are skipped (pip install onnxruntime)")
    elif not onnx_ok:
        say("onnx is not installed: torch.onnx.export is unavailable, onnxruntime columns are skipped")
    run = _Run(
        config, threads, seed, say, ort is not None and onnx_ok, scratch.name, out_dir or scratch.name, []
    )

    # The digits CNN is tiny: one thread trains it fastest (a parallel region per 8x8 conv costs
    # more than it saves, and far more on a busy machine). Benchmarks use `threads` everywhere.
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        digits = _train_and_prune_digits(run)
        phase("digits: train + prune")
        torch.set_num_threads(threads)
        digits_rows = _bench_digits(run, digits)
        phase("digits: export + benchmark")
        resnet_rows, resnet_baselines = _bench_resnet(run)
        phase("resnet: prune + export + benchmark")
        elapsed = time.perf_counter() - started
        results = _report(
            run, digits, digits_rows, resnet_rows, resnet_baselines, quick, elapsed, phases, ort
        )
        if out_dir is not None:
            with open(os.path.join(out_dir, "results.json"), "w") as f:
                json.dump(results, f, indent=2)
            _plot(results, os.path.join(out_dir, "results.png"))
            say(
                f"  wrote {', '.join(r['file'] for r in digits_rows)}, resnet_dense.spr, "
                f"resnet_sparse90.spr, results.json, results.png to {out_dir}"
            )
        return results
    finally:
        scratch.cleanup()
        torch.set_num_threads(torch_threads)


def _train_and_prune_digits(run: _Run) -> dict[str, Any]:
    """Trains the digits CNN and prunes two copies of it (90 % unstructured, 50 % of the filters),
    fine-tuning between steps; returns the data, the three models and the pruning curve."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    import sparsert.prune as sp
    from sparsert._demo_models import DigitsCNN

    config, seed, say = run.config, run.seed, run.say
    torch.manual_seed(seed)
    np.random.seed(seed)
    x_train, y_train, x_test, y_test = _digits(seed)
    loader = _Batches(x_train, y_train, 64, seed + 1)
    example = x_test[:1]

    def train(model: Any, epochs: int, desc: str, lr: float = 1e-3) -> None:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in tqdm(range(epochs), desc=desc, leave=False):
            for xb, yb in loader:
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(xb), yb).backward()
                opt.step()

    dense = DigitsCNN()
    train(dense, config.train_epochs, "training digits CNN", lr=3e-3)
    dense_acc = _accuracy_torch(dense, x_test, y_test)
    say(
        f"digits CNN: {len(y_train)} train / {len(y_test)} test images, {config.train_epochs} epochs, "
        f"test accuracy {dense_acc:.2%} (PyTorch)"
    )
    curve: list[dict[str, Any]] = [{"kind": "dense", "sparsity": 0.0, "accuracy": dense_acc}]

    def fine_tune_fn(kind: str) -> Callable[[Any, int], None]:
        def fn(model: Any, step: int) -> None:
            sp.fine_tune(
                model, loader, F.cross_entropy, epochs=config.fine_tune_epochs, lr=1e-3, progress=False
            )
            curve.append(
                {
                    "kind": kind,
                    "step": step,
                    "sparsity": _weight_sparsity(model),
                    "accuracy": _accuracy_torch(model, x_test, y_test),
                }
            )

        return fn

    unstructured = copy.deepcopy(dense)
    sp.iterative_prune(
        unstructured,
        sp.CubicSchedule(0.0, 0.9, config.unstructured_steps),
        fine_tune_fn("unstructured"),
        method="magnitude",
        scope="global",
        exclude_first=True,
    )
    structured = copy.deepcopy(dense)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sp.iterative_prune(
            structured,
            sp.LinearSchedule(0.0, 0.5, config.structured_steps),
            fine_tune_fn("structured"),
            method="l1",
            example_input=example,
        )
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "example": example,
        "curve": curve,
        "variants": [
            ("dense", dense, "digits_dense.spr"),
            ("unstructured 90%", unstructured, "digits_unstructured90.spr"),
            ("structured 50% filters", structured, "digits_structured50.spr"),
        ],
    }


def _bench_digits(run: _Run, digits: dict[str, Any]) -> list[dict[str, Any]]:
    """Exports the three digits variants, measures their accuracy with the runtime and their batch-1
    latency next to PyTorch and onnxruntime running the same variant."""
    import torch
    from tqdm.auto import tqdm

    import sparsert

    config, threads = run.config, run.threads
    x_test, y_test, example = digits["x_test"], digits["y_test"], digits["example"]
    digits_rows: list[dict[str, Any]] = []
    x_test_np = x_test.numpy()
    for label, model, filename in tqdm(digits["variants"], desc="export + benchmark digits", leave=False):
        model.eval()
        path = os.path.join(run.spr_dir, filename)
        export = sparsert.export(model, example, path, threads=threads)
        run.check_export(label, export)
        runtime = sparsert.load(path, threads=threads)
        logits = runtime.run(x_test_np)
        acc = float((logits.argmax(1) == y_test.numpy()).mean())
        plain = _plain_copy(model, example)
        x1 = x_test_np[:1].copy()
        x1_t = torch.from_numpy(x1)
        ours = _time_ms(lambda runtime=runtime, x1=x1: runtime.run(x1), 10, config.digits_repeats)
        with torch.inference_mode():
            pt = _time_ms(lambda plain=plain, x1_t=x1_t: plain(x1_t), 10, config.digits_repeats)
        onnxrt = None
        if run.use_ort:
            onnx_path = os.path.join(run.scratch, filename + ".onnx")
            onnxrt = _ort_timing(plain, x1_t, onnx_path, threads, config.digits_repeats, 10, run.say)
        digits_rows.append(
            {
                "variant": label,
                "file": filename,
                "sparsity": _weight_sparsity(model),
                "accuracy_sparsert": acc,
                "accuracy_torch": _accuracy_torch(model, x_test, y_test),
                "spr_bytes": export.file_size,
                "spr_dense_bytes": export.dense_size,
                "export_max_rel_error": export.max_rel_error,
                "shrunk_layers": export.shrunk_layers,
                "csr_weights": export.n_csr,
                "dense_weights": export.n_dense,
                "sparsert": ours,
                "pytorch": pt,
                "onnxruntime": onnxrt,
                "speedup_vs_pytorch": _speedup_value(pt, ours),
                "speedup_vs_onnxruntime": _speedup_value(onnxrt, ours),
            }
        )
    return digits_rows


def _bench_resnet(run: _Run) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A ResNet with random weights, dense and 90 % magnitude-pruned (first conv dense): exported and
    timed against PyTorch and onnxruntime running the dense model."""
    import torch
    from tqdm.auto import tqdm

    import sparsert
    import sparsert.prune as sp
    from sparsert._demo_models import ResNet

    config, seed, threads, use_ort = run.config, run.seed, run.threads, run.use_ort
    torch.manual_seed(seed)
    size = config.resnet_size
    resnet = ResNet(config.resnet_blocks, config.resnet_width).eval()
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    image_np = image.numpy()
    sparse_resnet = copy.deepcopy(resnet)
    sp.magnitude_prune(sparse_resnet, sparsity=0.9, scope="layer", exclude_first=True)
    sparse_resnet.eval()
    resnet_rows: list[dict[str, Any]] = []
    reps = config.resnet_repeats
    bar = tqdm(total=6 if use_ort else 5, desc="ResNet export + benchmark", leave=False)
    with torch.inference_mode():
        pt_dense = _time_ms(lambda: resnet(image), 2, reps)
    bar.update()
    ort_dense = None
    if use_ort:
        ort_dense = _ort_timing(
            resnet, image, os.path.join(run.scratch, "resnet.onnx"), threads, reps, 2, run.say
        )
        bar.update()
    for label, model, filename in (
        ("dense", resnet, "resnet_dense.spr"),
        ("unstructured 90% (conv1 dense)", sparse_resnet, "resnet_sparse90.spr"),
    ):
        path = os.path.join(run.spr_dir, filename)
        export = sparsert.export(model, image, path, threads=threads)
        run.check_export(f"ResNet {label}", export)
        bar.update()
        runtime = sparsert.load(path, threads=threads)
        ours = _time_ms(lambda runtime=runtime: runtime.run(image_np), 2, reps)
        bar.update()
        resnet_rows.append(
            {
                "variant": label,
                "file": filename,
                "sparsity": _weight_sparsity(model),
                "spr_bytes": export.file_size,
                "spr_dense_bytes": export.dense_size,
                "export_max_rel_error": export.max_rel_error,
                "csr_weights": export.n_csr,
                "dense_weights": export.n_dense,
                "sparsert": ours,
                "pytorch_dense": pt_dense,
                "onnxruntime_dense": ort_dense,
                "speedup_vs_pytorch_dense": _speedup_value(pt_dense, ours),
                "speedup_vs_onnxruntime_dense": _speedup_value(ort_dense, ours),
            }
        )
    bar.close()
    return resnet_rows, {"pytorch_dense": pt_dense, "onnxruntime_dense": ort_dense, "size": size}


def _report(
    run: _Run,
    digits: dict[str, Any],
    digits_rows: list[dict[str, Any]],
    resnet_rows: list[dict[str, Any]],
    resnet_baselines: dict[str, Any],
    quick: bool,
    elapsed: float,
    phases: dict[str, float],
    ort: Any,
) -> dict[str, Any]:
    """Prints the tables and the summary; returns everything as the results dict."""
    import torch

    import sparsert

    config, say, mismatches = run.config, run.say, run.mismatches
    reps = config.resnet_repeats
    pt_dense, ort_dense, size = (
        resnet_baselines["pytorch_dense"],
        resnet_baselines["onnxruntime_dense"],
        resnet_baselines["size"],
    )
    y_train, y_test, curve = digits["y_train"], digits["y_test"], digits["curve"]
    baselines = "PyTorch eager" + (" and onnxruntime" if run.use_ort else "")
    say()
    say(
        f"Digits CNN (8x8, batch 1 latency, median of {config.digits_repeats}; baselines "
        f"{baselines} run the same variant, structured = shrunk model)"
    )
    head = [
        "variant",
        "sparsity",
        "accuracy",
        ".spr size",
        "sparsert ms",
        "PyTorch ms",
        "ORT ms",
        "vs PyTorch",
        "vs ORT",
    ]
    rows = [
        [
            r["variant"],
            f"{r['sparsity']:.1%}",
            f"{r['accuracy_sparsert']:.2%}",
            _size(r["spr_bytes"]),
            _ms(r["sparsert"]),
            _ms(r["pytorch"]),
            _ms(r["onnxruntime"]),
            _speedup(r["pytorch"], r["sparsert"]),
            _speedup(r["onnxruntime"], r["sparsert"]),
        ]
        for r in digits_rows
    ]
    digits_table = _table(head, rows)
    say(digits_table)
    notes = [n for n in (_noise_note([c for r in rows for c in r]),) if n]
    dense_vs_ort = _speedup_value(digits_rows[0]["onnxruntime"], digits_rows[0]["sparsert"])
    if dense_vs_ort is not None and dense_vs_ort < 1:
        notes.append(
            f"sparsert dense runs this tiny CNN at {dense_vs_ort:.2f}x onnxruntime: a call takes microseconds, "
            "so fixed per-call costs (input checks, the Python binding, output allocation) weigh as much as "
            "the arithmetic; the sparse variants remove most of the arithmetic (see the ResNet table for a "
            "model where the kernels dominate)"
        )
    for note in notes:
        say(f"  {note}")
    say()
    say(
        f"{config.resnet_label}, random weights (batch 1 latency, median of {reps}; baselines run the "
        f"dense model)"
    )
    head = [
        "variant",
        "sparsity",
        ".spr size",
        "sparsert ms",
        "PyTorch dense ms",
        "ORT dense ms",
        "vs PyTorch",
        "vs ORT",
    ]
    rows = [
        [
            r["variant"],
            f"{r['sparsity']:.1%}",
            _size(r["spr_bytes"]),
            _ms(r["sparsert"]),
            _ms(r["pytorch_dense"]),
            _ms(r["onnxruntime_dense"]),
            _speedup(r["pytorch_dense"], r["sparsert"]),
            _speedup(r["onnxruntime_dense"], r["sparsert"]),
        ]
        for r in resnet_rows
    ]
    resnet_table = _table(head, rows)
    say(resnet_table)
    note = _noise_note([c for r in rows for c in r])
    if note:
        say(f"  {note}")
    say()
    unstr, struct = digits_rows[1], digits_rows[2]
    say("summary:")
    dense_bytes = digits_rows[0]["spr_bytes"]
    say(
        f"  digits: 90% unstructured keeps {unstr['accuracy_sparsert']:.2%} accuracy (dense "
        f"{digits_rows[0]['accuracy_sparsert']:.2%}) in a {unstr['spr_bytes'] / dense_bytes:.0%}"
        f"-size file; 50% filters: {struct['accuracy_sparsert']:.2%}, "
        f"{struct['spr_bytes'] / dense_bytes:.0%} size"
    )
    say(
        f"  ResNet: 90% sparse runs in {resnet_rows[1]['sparsert']['median_ms']:.1f} ms vs "
        f"{resnet_rows[0]['sparsert']['median_ms']:.1f} ms dense in sparsert"
        + (f", onnxruntime dense {ort_dense['median_ms']:.1f} ms" if ort_dense else "")
        + f", PyTorch dense {pt_dense['median_ms']:.1f} ms"
    )
    if quick:
        say(
            "  quick mode: fewer epochs and pruning steps, a smaller ResNet at 112x112, fewer repeats; "
            "run without --quick for the full ResNet-18 at 224x224"
        )
    if mismatches:
        say(f"  WARNING: {len(mismatches)} exported model(s) differ from PyTorch: {', '.join(mismatches)}")
    say(f"  total time {elapsed:.1f} s")

    results: dict[str, Any] = {
        "mode": config.name,
        "export_mismatches": mismatches,
        "seed": run.seed,
        "threads": run.threads,
        "elapsed_s": elapsed,
        "phase_s": phases,
        "environment": {
            "sparsert": sparsert.__version__,
            "kernels": sparsert.cpu_features(),
            "torch": torch.__version__,
            "onnxruntime": getattr(ort, "__version__", None),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "digits": {
            "train": len(y_train),
            "test": len(y_test),
            "epochs": config.train_epochs,
            "fine_tune_epochs_per_step": config.fine_tune_epochs,
            "variants": digits_rows,
            "pruning_curve": curve,
        },
        "resnet": {
            "description": config.resnet_label,
            "input": [1, 3, size, size],
            "variants": resnet_rows,
        },
        "tables": {"digits": digits_table, "resnet": resnet_table},
    }
    return results


def _plot(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    curve = results["digits"]["pruning_curve"]
    ax = axes[0]
    dense = [c for c in curve if c["kind"] == "dense"]
    for kind, marker in (("unstructured", "o-"), ("structured", "s-")):
        pts = dense + [c for c in curve if c["kind"] == kind]
        label = f"{kind} magnitude" if kind == "unstructured" else "structured L1 filters"
        ax.plot([100 * c["sparsity"] for c in pts], [100 * c["accuracy"] for c in pts], marker,
                label=f"{label} (after each prune + fine-tune step)")
    ax.set(xlabel="weight sparsity (%)", ylabel="test accuracy (%)", title="digits CNN: accuracy vs sparsity")
    ax.grid(alpha=0.3)
    ax.legend()

    ax = axes[1]
    rows = results["digits"]["variants"]
    xs = [100 * r["sparsity"] for r in rows]
    for key, label, marker in (
        ("sparsert", "sparsert", "o"),
        ("pytorch", "PyTorch eager", "s"),
        ("onnxruntime", "onnxruntime", "^"),
    ):
        ys = [r[key]["median_ms"] * 1e3 if r[key] else None for r in rows]
        if all(y is not None for y in ys):
            ax.plot(xs, ys, marker, label=label, markersize=8)
    for x, r in zip(xs, rows):
        ax.annotate(
            r["variant"],
            (x, r["sparsert"]["median_ms"] * 1e3),
            fontsize=7,
            textcoords="offset points",
            xytext=(4, 4),
        )
    ax.set(
        xlabel="weight sparsity (%)", ylabel="latency, batch 1 (us)", title="digits CNN: latency vs sparsity"
    )
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()

    ax = axes[2]
    rows = results["resnet"]["variants"]
    xs = [100 * r["sparsity"] for r in rows]
    ax.plot(xs, [r["sparsert"]["median_ms"] for r in rows], "o-", label="sparsert", markersize=8)
    ax.axhline(rows[0]["pytorch_dense"]["median_ms"], color="C1", ls="--", label="PyTorch dense")
    if rows[0]["onnxruntime_dense"]:
        ax.axhline(rows[0]["onnxruntime_dense"]["median_ms"], color="C2", ls=":", label="onnxruntime dense")
    ax.set(
        xlabel="weight sparsity (%)",
        ylabel="latency, batch 1 (ms)",
        title="ResNet: latency vs sparsity",
    )
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
