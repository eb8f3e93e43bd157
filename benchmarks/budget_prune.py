"""Budget pruning against uniform and global magnitude pruning, measured side by side.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.budget_prune [--quick]

1. digits CNN (scikit-learn's digits, batch 64, 1 thread): the dense model's sparsert time; a
   budget plan for --speedup (default 1.5x) pruned gradually with fine-tuning
   (iterative_prune(targets=plan.sparsities)); then uniform per-layer and one global threshold
   at the lowest grid sparsity whose measured time reaches the budget plan's, each pruned and
   fine-tuned the same way. Prints sparsity, measured ms and test accuracy side by side.
2. ResNet-18 (224x224) and a BERT-style 2-layer encoder (seq 128, hidden 768), random weights:
   budget_prune(speedup=2) one-shot; prints target, predicted and measured end-to-end ms.
Records the CPU model with the tables (compare only figures of one run).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import sparsert
import sparsert.prune as sp
from sparsert.prune.latency import _cpu, measure_ms

GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


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


def digits(args) -> None:
    from sparsert._demo_models import DigitsCNN

    torch.manual_seed(args.seed)
    xt, yt, xv, yv = _digits(args.seed)
    dense = DigitsCNN()
    _train(dense, xt, yt, args.epochs, lr=3e-3, seed=args.seed)
    batch = xv[:64]
    dense_ms = measure_ms(dense, batch, 1)
    print(f"\ndigits CNN, batch 64, 1 thread: dense {dense_ms:.3f} ms, accuracy {_accuracy(dense, xv, yv):.2%}")

    def prune_and_tune(model, **kwargs):
        def fine(m, step):
            _train(m, xt, yt, args.tune_epochs, lr=1e-3, seed=args.seed + step)

        sp.iterative_prune(model, sp.CubicSchedule(0.0, kwargs.pop("final"), steps=3), fine, progress=False, **kwargs)
        sp.finalize(model)
        return model

    budget = copy.deepcopy(dense)
    plan = sp.budget_prune(budget, batch, speedup=args.speedup, threads=1, apply=False, progress=False,
                           sparsities=(0.0, *GRID))
    prune_and_tune(budget, final=1.0, targets=plan.sparsities)
    rows = [("budget_prune", budget)]
    budget_ms = measure_ms(budget, batch, 1)
    for scope in ("layer", "global"):
        chosen = None
        for s in GRID:
            trial = prune_and_tune(copy.deepcopy(dense), final=s, method="magnitude", scope=scope)
            chosen = trial
            if measure_ms(trial, batch, 1) <= budget_ms * 1.05:
                break
        rows.append((f"uniform per layer" if scope == "layer" else "global threshold", chosen))
    print(f"{'method':<20} {'sparsity':>9} {'ms':>8} {'speedup':>8} {'accuracy':>9}")
    for name, model in rows:
        ms = measure_ms(model, batch, 1)
        print(f"{name:<20} {_sparsity(model):9.1%} {ms:8.3f} {dense_ms / ms:7.2f}x {_accuracy(model, xv, yv):9.2%}")
    print("budget plan:", {k: v for k, v in plan.sparsities.items()})


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


def random_models(args) -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from models import resnet18_torch

    torch.manual_seed(args.seed)
    cases = [("ResNet-18 224x224", resnet18_torch(1000).eval(), torch.randn(1, 3, 224, 224)),
             ("BERT-2 seq 128", Encoder().eval(), torch.randn(1, 128, 768))]
    if args.quick:
        cases = [("ResNet-18 112x112", resnet18_torch(10).eval(), torch.randn(1, 3, 112, 112))]
    print(f"\n{'model':<20} {'threads':>7} {'dense ms':>9} {'target':>8} {'predicted':>9} {'measured':>9} "
          f"{'vs target':>9}")
    for name, model, x in cases:
        for threads in args.threads:
            m = copy.deepcopy(model)
            r = sp.budget_prune(m, x, speedup=2.0, threads=threads, progress=False)
            print(f"{name:<20} {r.latency.threads:>7} {r.dense_ms:9.2f} {r.target_ms:8.2f} {r.predicted_ms:9.2f} "
                  f"{r.measured_ms:9.2f} {r.measured_ms / r.target_ms - 1:+8.1%}")


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
            r = sp.structured_budget_prune(m, x, speedup=args.structured_speedup, threads=threads,
                                           round_to=8, progress=False)
            before = sum(p.numel() for p in model.parameters())
            after = sum(p.numel() for p in sp.shrink(m, x).parameters())
            print(f"{name:<20} {r.threads:>7} {r.dense_ms:9.2f} {r.target_ms:8.2f} {r.predicted_ms:9.2f} "
                  f"{r.measured_ms:9.2f} {r.measured_ms / r.target_ms - 1:+8.1%} {after / before:10.1%}")
        print(r.table())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speedup", type=float, default=1.5)
    p.add_argument("--structured-speedup", type=float, default=2.0)
    p.add_argument("--threads", type=lambda s: [int(t) for t in s.split(",")], default=[1, 2])
    p.add_argument("--skip", nargs="*", default=[], choices=["digits", "random", "structured"])
    args = p.parse_args()
    args.epochs, args.tune_epochs = (5, 1) if args.quick else (20, 2)
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
