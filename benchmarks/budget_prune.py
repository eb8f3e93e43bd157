"""Budget pruning against uniform and global magnitude pruning, measured side by side.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.budget_prune [--quick] [--plot PNG]

1. digits CNN (scikit-learn's digits, batch 64, 1 thread), per seed (--seeds): budget plans for
   each --speedups target (magnitude and Fisher saliency), pruned gradually with fine-tuning
   (iterative_prune(targets=plan.sparsities)); uniform per-layer and global magnitude pruning at
   each --sparsities point, pruned and fine-tuned the same way. All are timed together
   (interleaved) with the dense model; accuracy on the held-out 20%. Each budget plan is then set
   against uniform and global read at the plan's own measured speed (interpolated along their
   curves); --plot draws accuracy against speed.
2. ResNet-18 (224x224) and a BERT-style 2-layer encoder (seq 128, hidden 768), random weights:
   budget_prune(speedup=2) one-shot, and on ResNet-18 a budget of 3x onnxruntime running the
   dense model (timed in its own process): target, predicted and measured end-to-end ms, or
   REFUSED with the fastest plan's measured time.
3. structured_budget_prune on the same two models.
Records the CPU model with the tables (compare only figures of one run).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import sparsert
import sparsert.prune as sp
from sparsert.prune.latency import _cpu

GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)


def _digits(seed: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    split = int(0.8 * len(y))
    return x[:split], y[:split], x[split:], y[split:]


def _train(model, x, y, epochs, lr=1e-3, seed=0):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = order[i:i + 64]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def _accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _sparsity(model) -> float:
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = sparsert.exporter.effective_param(m, "weight")
            zeros += int((w == 0).sum())
            total += w.numel()
    return zeros / total


def _measure_together(models, batch, rounds: int = 7, runs: int = 30) -> list[float]:
    """Each model's sparsert time (1 thread), measured interleaved -- every round runs each model
    ``runs`` times -- so a slow period of this shared machine hits all of them alike; per model the
    lowest round median, in ms."""
    feeds = batch.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        loaded = []
        for i, model in enumerate(models):
            path = os.path.join(tmp, f"m{i}.spr")
            sparsert.export(model, batch, path)
            loaded.append(sparsert.load(path, threads=1))
    for rt in loaded:
        rt.run(feeds)
    best = [math.inf] * len(loaded)
    for _ in range(rounds):
        for i, rt in enumerate(loaded):
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                rt.run(feeds)
                times.append(time.perf_counter() - t0)
            best[i] = min(best[i], float(np.median(times)) * 1e3)
    return best


def _interp(points: list[tuple[float, float]], x: float) -> float | None:
    """Accuracy of a (speedup, accuracy) curve at speedup ``x`` (linear between its points);
    None beyond its fastest point (the method does not reach that latency)."""
    pts = sorted(points)
    if not pts or x > pts[-1][0]:
        return None
    return float(np.interp(x, [p[0] for p in pts], [p[1] for p in pts]))


def digits(args) -> None:
    """Accuracy against measured speed for each method, per seed: budget plans (magnitude and
    Fisher saliency) at each --speedups budget, uniform and global magnitude pruning at each
    --sparsities point; all pruned in 3 steps with fine-tuning, then timed together (interleaved)
    against the dense model; accuracy on the held-out 20%.  Uniform and global are compared with
    each budget plan at the plan's own measured speed (interpolated along their curves)."""
    from sparsert._demo_models import DigitsCNN

    curves: dict[tuple[int, str], list[tuple[float, float, float, str]]] = {}
    for seed in args.seeds:
        torch.manual_seed(seed)
        xt, yt, xv, yv = _digits(seed)
        dense = DigitsCNN()
        _train(dense, xt, yt, args.epochs, lr=3e-3, seed=seed)
        batch = xv[:64]
        dense_acc = _accuracy(dense, xv, yv)
        n_test = len(yv)
        loader = [(xt[i:i + 64], yt[i:i + 64]) for i in range(0, len(yt), 64)]

        def prune_and_tune(model, final, seed=seed, xt=xt, yt=yt, **kwargs):
            def fine(m, step):
                _train(m, xt, yt, args.tune_epochs, lr=1e-3, seed=seed + step)

            sp.iterative_prune(model, sp.CubicSchedule(0.0, final, steps=3), fine, progress=False, **kwargs)
            sp.finalize(model)
            return model

        trained: list[tuple[str, nn.Module, str]] = []
        for speedup in args.speedups:
            for saliency in ("magnitude", "fisher"):
                model = copy.deepcopy(dense)
                extra = ({"loader": loader, "loss_fn": F.cross_entropy, "batches": 16}
                         if saliency == "fisher" else {})
                try:
                    plan = sp.budget_prune(model, batch, speedup=speedup, threads=1, apply=False, progress=False,
                                           sparsities=(0.0, *GRID), saliency=saliency, **extra)
                except sp.BudgetUnreachableError as e:
                    print(f"seed {seed}, budget {speedup}x ({saliency}): refused: {e}")
                    continue
                prune_and_tune(model, 1.0, targets=plan.sparsities)
                plan_text = " ".join(f"{k}:{v:.0%}" for k, v in plan.sparsities.items())
                trained.append((f"budget ({saliency})", model, f"target {speedup}x: {plan_text}"))
        for scope, name in (("layer", "uniform per layer"), ("global", "global threshold")):
            for sparsity in args.sparsities:
                model = prune_and_tune(copy.deepcopy(dense), sparsity, method="magnitude", scope=scope)
                trained.append((name, model, f"{sparsity:.0%}"))
        times = _measure_together([dense] + [m for _, m, _ in trained], batch)
        print(f"\nseed {seed}: digits CNN, batch 64, 1 thread, all timed together; dense {times[0]:.3f} ms, "
              f"accuracy {dense_acc:.2%}")
        print(f"{'method':<20} {'sparsity':>9} {'ms':>8} {'speedup':>8} {'accuracy':>9}  setting")
        for (name, model, note), ms in zip(trained, times[1:]):
            acc = _accuracy(model, xv, yv)
            curves.setdefault((seed, name), []).append((times[0] / ms, acc, _sparsity(model), note))
            print(f"{name:<20} {_sparsity(model):9.1%} {ms:8.3f} {times[0] / ms:7.2f}x {acc:9.2%}  {note}")

    # each budget plan against the other curves of its seed at the plan's measured speed; a
    # difference under one test image is a tie
    one = 1.0 / n_test
    print(f"\nat the budget plans' measured speed (seeds {args.seeds}; '-' = the method never got that fast; "
          f"one test image = {one:.2%}):")
    print(f"{'seed':>4}  {'budget':<28} {'speedup':>8} {'budget acc':>10} {'uniform':>8} {'global':>8}")
    score = {(b, o): [0, 0, 0] for b in ("budget (magnitude)", "budget (fisher)")
             for o in ("uniform per layer", "global threshold")}
    for (seed, name), pts in sorted(curves.items()):
        if not name.startswith("budget"):
            continue
        for speed, acc, _, note in pts:
            cells = []
            for other in ("uniform per layer", "global threshold"):
                a = _interp([(p[0], p[1]) for p in curves.get((seed, other), [])], speed)
                cells.append("-" if a is None else f"{a:.2%}")
                diff = 1.0 if a is None else acc - a
                score[(name, other)][0 if diff >= one else 2 if diff <= -one else 1] += 1
            label = f"{name} {note.split(':')[0][7:]}"
            print(f"{seed:>4}  {label:<28} {speed:7.2f}x {acc:10.2%} {cells[0]:>8} {cells[1]:>8}")
    for (name, other), (won, tied, lost) in score.items():
        print(f"{name} against {other} at equal speed: {won} more accurate, {tied} within one image, {lost} less")
    if args.plot:
        _plot(curves, args.plot)


def _plot(curves, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"budget (magnitude)": "tab:orange", "budget (fisher)": "tab:red",
              "uniform per layer": "tab:blue", "global threshold": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, low in zip(axes, (0, 94)):
        seen = set()
        for (_seed, name), pts in sorted(curves.items()):
            pts = sorted(pts)
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], "o-", color=colors[name], alpha=0.7,
                    markersize=4, label=None if name in seen else name)
            seen.add(name)
        ax.set_xlabel("speedup over the dense model (sparsert, measured, 1 thread)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(low, 100.2)
        ax.grid(alpha=0.3)
    axes[0].set_title("digits CNN: accuracy against measured speed")
    axes[1].set_title("the same, from 94% (one line per seed)")
    axes[0].legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


class Encoder(nn.Module):
    """BERT-style layers (nn.Linear projections, softmax attention, GELU FFN, LayerNorm)."""

    def __init__(self, hidden=768, heads=12, ffn=3072, layers=2):
        super().__init__()
        self.heads = heads
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(nn.ModuleDict({
                "q": nn.Linear(hidden, hidden), "k": nn.Linear(hidden, hidden), "v": nn.Linear(hidden, hidden),
                "o": nn.Linear(hidden, hidden), "ln1": nn.LayerNorm(hidden),
                "up": nn.Linear(hidden, ffn), "down": nn.Linear(ffn, hidden), "ln2": nn.LayerNorm(hidden)}))

    def forward(self, x):
        b, t, h = x.shape
        d = h // self.heads
        for blk in self.blocks:
            q = blk["q"](x).reshape(b, t, self.heads, d).permute(0, 2, 1, 3)
            k = blk["k"](x).reshape(b, t, self.heads, d).permute(0, 2, 3, 1)
            v = blk["v"](x).reshape(b, t, self.heads, d).permute(0, 2, 1, 3)
            a = torch.softmax(torch.matmul(q, k) * (1.0 / math.sqrt(d)), dim=-1)
            ctx = torch.matmul(a, v).permute(0, 2, 1, 3).reshape(b, t, h)
            x = blk["ln1"](x + blk["o"](ctx))
            x = blk["ln2"](x + blk["down"](F.gelu(blk["up"](x))))
        return x


_ORT_TIMER = """
import sys, time, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = int(sys.argv[2]); o.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
feed = {s.get_inputs()[0].name: np.load(sys.argv[3])}
for _ in range(3): s.run(None, feed)
best = float("inf")
for _ in range(5):
    t = []
    for _ in range(15):
        t0 = time.perf_counter(); s.run(None, feed); t.append(time.perf_counter() - t0)
    best = min(best, float(np.median(t)) * 1e3)
print(best)
"""


def _ort_ms(model, x, threads: int) -> float:
    """onnxruntime's time for the dense model, in its own process (lowest of 5 round medians)."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, x_path = os.path.join(tmp, "m.onnx"), os.path.join(tmp, "x.npy")
        torch.onnx.export(model, (x,), onnx_path, opset_version=17, dynamo=False)
        np.save(x_path, x.numpy())
        out = subprocess.run([sys.executable, "-c", _ORT_TIMER, onnx_path, str(threads), x_path],
                             capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def random_models(args) -> None:
    """budget_prune(speedup=2) one-shot on ResNet-18 and BERT-2; and on ResNet-18 a budget of 3x
    onnxruntime running the dense model: met, or refused with the fastest plan's measured time."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from models import resnet18_torch

    torch.manual_seed(args.seed)
    cases = [("ResNet-18 224x224", resnet18_torch(1000).eval(), torch.randn(1, 3, 224, 224)),
             ("BERT-2 seq 128", Encoder().eval(), torch.randn(1, 128, 768))]
    if args.quick:
        cases = [("ResNet-18 112x112", resnet18_torch(10).eval(), torch.randn(1, 3, 112, 112))]
    print(f"\n{'model':<20} {'threads':>7} {'budget':>18} {'dense ms':>9} {'target':>8} {'predicted':>9} "
          f"{'measured':>9} {'vs target':>9}")
    for name, model, x in cases:
        for threads in args.threads:
            budgets = [("speedup 2x", {"speedup": 2.0})]
            if name.startswith("ResNet-18"):
                ort_ms = _ort_ms(model, x, threads)
                budgets.append((f"3x ORT ({ort_ms:.1f} ms)", {"target_ms": ort_ms / 3}))
            for label, budget in budgets:
                m = copy.deepcopy(model)
                try:
                    r = sp.budget_prune(m, x, threads=threads, progress=False, **budget)
                except sp.BudgetUnreachableError as e:
                    r = e.result
                    label += " REFUSED"
                print(f"{name:<20} {r.latency.threads:>7} {label:>18} {r.dense_ms:9.2f} {r.target_ms:8.2f} "
                      f"{r.predicted_ms:9.2f} {r.measured_ms:9.2f} {r.measured_ms / r.target_ms - 1:+8.1%}")


def structured(args) -> None:
    """structured_budget_prune on ResNet-18 (filters per residual group and per block) and on the
    BERT-style encoder (FFN neurons; attention heads stay whole), one-shot, random weights."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from models import resnet18_torch

    torch.manual_seed(args.seed)
    cases = [("ResNet-18 224x224", resnet18_torch(1000).eval(), torch.randn(1, 3, 224, 224)),
             ("BERT-2 seq 128", Encoder().eval(), torch.randn(1, 128, 768))]
    if args.quick:
        cases = [("ResNet-18 112x112", resnet18_torch(10).eval(), torch.randn(1, 3, 112, 112))]
    print(f"\nstructured budget (speedup {args.structured_speedup}, round_to=8, one-shot):")
    print(f"{'model':<20} {'threads':>7} {'dense ms':>9} {'target':>8} {'predicted':>9} {'measured':>9} "
          f"{'vs target':>9} {'params kept':>11}")
    for name, model, x in cases:
        for threads in args.threads:
            m = copy.deepcopy(model)
            try:
                r = sp.structured_budget_prune(m, x, speedup=args.structured_speedup, threads=threads,
                                               round_to=8, progress=False)
            except sp.BudgetUnreachableError as e:
                print(f"{name:<20} {threads:>7} REFUSED: {e}")
                continue
            before = sum(p.numel() for p in model.parameters())
            after = sum(p.numel() for p in sp.shrink(m, x).parameters())
            print(f"{name:<20} {r.threads:>7} {r.dense_ms:9.2f} {r.target_ms:8.2f} {r.predicted_ms:9.2f} "
                  f"{r.measured_ms:9.2f} {r.measured_ms / r.target_ms - 1:+8.1%} {after / before:10.1%}")
            print(r.table())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speedups", type=lambda s: [float(t) for t in s.split(",")], default=[1.5, 2.0, 2.5, 3.0, 3.5],
                   help="digits budgets, comma-separated speedups over the dense model")
    p.add_argument("--seeds", type=lambda s: [int(t) for t in s.split(",")], default=[0, 1, 2])
    p.add_argument("--sparsities", type=lambda s: [float(t) for t in s.split(",")],
                   default=[0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97],
                   help="digits: the uniform and global operating points")
    p.add_argument("--plot", default=None, help="digits: write accuracy against speed to this PNG")
    p.add_argument("--structured-speedup", type=float, default=2.0)
    p.add_argument("--threads", type=lambda s: [int(t) for t in s.split(",")], default=[1, 2])
    p.add_argument("--skip", nargs="*", default=[], choices=["digits", "random", "structured"])
    args = p.parse_args()
    args.epochs, args.tune_epochs = (5, 1) if args.quick else (20, 2)
    if args.quick:
        args.seeds, args.speedups, args.sparsities = args.seeds[:1], args.speedups[:1], [0.8, 0.95]
    warnings.simplefilter("ignore")
    os.environ.setdefault("SPARSERT_CACHE_DIR", tempfile.mkdtemp())
    print(f"CPU: {_cpu()}; sparsert {sparsert.__version__}")
    if "digits" not in args.skip:
        digits(args)
    if "random" not in args.skip:
        random_models(args)
    if "structured" not in args.skip:
        structured(args)


if __name__ == "__main__":
    main()
