"""Block sparsity (4x1) against unstructured sparsity: layer times and the accuracy cost.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.block_sparsity [--quick]

1. Layers (the shapes of BERT-2, ResNet-18 and ResNet-50), 1 thread, batch 1: sparsert's time for
   the dense weight, and for the weight magnitude-pruned unstructured and in 4x1 blocks at 50-95%,
   each with the sparse kernels forced (``layer_kernel="sparse"``: where sparse starts to beat
   dense) and with the runtime's own choice. Prints the time and the speedup over dense.
   Every cell is the lowest of ``--rounds`` medians of ``--repeats`` runs, the variants of a
   shape interleaved, so the machine's drift hits them alike.
2. Digits CNN (scikit-learn's digits): trained dense, then pruned to 70/80/90% unstructured and
   in 4x1 blocks with the same gradual schedule and fine-tuning; test accuracy (360 images, mean
   over ``--seeds`` seeds) and sparsert time at batch 64, 1 thread.
Records the CPU model with the tables (compare only figures of one run).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
import warnings

import numpy as np
import torch
from torch import nn

import sparsert
import sparsert.prune as sp
from sparsert.prune.latency import _cpu

LAYERS = [
    ("BERT Linear 768->3072, seq 128", lambda: nn.Linear(768, 3072), (128, 768)),
    ("BERT Linear 3072->768, seq 128", lambda: nn.Linear(3072, 768), (128, 3072)),
    ("BERT Linear 768->768, seq 128", lambda: nn.Linear(768, 768), (128, 768)),
    ("Linear 768->768, batch 1", lambda: nn.Linear(768, 768), (1, 768)),
    ("ResNet-18 3x3 64->64, 56x56", lambda: nn.Conv2d(64, 64, 3, padding=1), (1, 64, 56, 56)),
    ("ResNet-18 3x3 128->128, 28x28", lambda: nn.Conv2d(128, 128, 3, padding=1), (1, 128, 28, 28)),
    ("ResNet-18 3x3 256->256, 14x14", lambda: nn.Conv2d(256, 256, 3, padding=1), (1, 256, 14, 14)),
    ("ResNet-18 3x3 512->512, 7x7", lambda: nn.Conv2d(512, 512, 3, padding=1), (1, 512, 7, 7)),
    ("ResNet-18 3x3 128->256 s2, 28x28", lambda: nn.Conv2d(128, 256, 3, 2, 1), (1, 128, 28, 28)),
    ("ResNet-50 1x1 128->512, 28x28", lambda: nn.Conv2d(128, 512, 1), (1, 128, 28, 28)),
]
SPARSITIES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def _time(model: sparsert.Model, x: np.ndarray, repeats: int) -> float:
    model.run(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.run(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def layers(args, folder: str) -> None:
    print("\n## Layers: ms (speedup over dense), 1 thread; 'forced' = sparse kernels forced, "
          "'auto' = the runtime's choice")
    cases = [LAYERS[2], LAYERS[5]] if args.quick else LAYERS
    sparsities = (0.9,) if args.quick else SPARSITIES
    for title, make, shape in cases:
        torch.manual_seed(0)
        base = nn.Sequential(make()).eval()
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        xt = torch.from_numpy(x)
        models: dict[str, sparsert.Model] = {}
        path = os.path.join(folder, "dense.spr")
        sparsert.export(base, xt, path)
        models["dense"] = sparsert.load(path, threads=1)
        for s in sparsities:
            for kind, block in (("unstructured", (1, 1)), ("4x1 blocks", (4, 1))):
                m = copy.deepcopy(base)
                sp.magnitude_prune(m, s, block=block)
                path = os.path.join(folder, f"{kind[:2]}{s}.spr")
                sparsert.export(m, xt, path)
                models[(kind, s, "forced")] = sparsert.load(path, threads=1, layer_kernel="sparse")
                models[(kind, s, "auto")] = sparsert.load(path, threads=1)
        best = {k: float("inf") for k in models}
        for _ in range(args.rounds):
            for k, m in models.items():
                best[k] = min(best[k], _time(m, x, args.repeats))
        dense = best["dense"]
        print(f"\n### {title}: dense {dense:.3f} ms")
        print("| sparsity | unstructured forced | unstructured auto | 4x1 forced | 4x1 auto |")
        print("|---|---|---|---|---|")
        for s in sparsities:
            cells = []
            for kind in ("unstructured", "4x1 blocks"):
                for how in ("forced", "auto"):
                    t = best[(kind, s, how)]
                    cells.append(f"{t:.3f} ({dense / t:.2f}x)")
            print(f"| {s:.0%} | " + " | ".join(cells) + " |")


def digits(args, folder: str) -> None:
    from sparsert._demo_models import DigitsCNN

    from .budget_prune import _accuracy, _digits, _train

    sparsities = (0.9,) if args.quick else (0.7, 0.8, 0.9)
    epochs, tune_epochs = (2, 1) if args.quick else (20, 2)
    acc: dict[tuple[str, float], list[float]] = {}
    dense_acc: list[float] = []
    ms: dict[tuple[str, float], float] = {}
    dense_ms = 0.0

    def sparsert_ms(model, x):
        path = os.path.join(folder, "digits.spr")
        sparsert.export(model, x, path)
        m = sparsert.load(path, threads=1)
        return min(_time(m, x.numpy(), args.repeats) for _ in range(args.rounds))

    for seed in range(args.seeds):
        torch.manual_seed(seed)
        xt, yt, xv, yv = _digits(seed)
        dense = DigitsCNN()
        _train(dense, xt, yt, epochs, lr=3e-3, seed=seed)
        dense_acc.append(_accuracy(dense, xv, yv))
        if seed == 0:
            dense_ms = sparsert_ms(dense, xv[:64])
        for s in sparsities:
            for kind, block in (("unstructured", (1, 1)), ("4x1 blocks", (4, 1))):
                m = copy.deepcopy(dense)
                sp.iterative_prune(
                    m, sp.CubicSchedule(0.0, s, steps=3),
                    lambda mm, step, xt=xt, yt=yt, seed=seed: _train(mm, xt, yt, tune_epochs, 1e-3, seed + step),
                    progress=False, block=block, exclude_first=True,
                )
                sp.finalize(m)
                acc.setdefault((kind, s), []).append(_accuracy(m, xv, yv))
                if seed == 0:
                    ms[(kind, s)] = sparsert_ms(m, xv[:64])
    print(f"\n## Digits CNN: test accuracy (mean of {args.seeds} seed(s), 360 images each) and "
          f"sparsert ms at batch 64, 1 thread")
    print(f"dense: {statistics.mean(dense_acc):.2%}, {dense_ms:.3f} ms")
    print("| sparsity | unstructured accuracy | 4x1 accuracy | unstructured ms | 4x1 ms |")
    print("|---|---|---|---|---|")
    for s in sparsities:
        a_u, a_b = statistics.mean(acc[("unstructured", s)]), statistics.mean(acc[("4x1 blocks", s)])
        print(f"| {s:.0%} | {a_u:.2%} | {a_b:.2%} | {ms[('unstructured', s)]:.3f} | {ms[('4x1 blocks', s)]:.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="three layers, two sparsities, a short training")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--skip", nargs="*", default=[], choices=["layers", "digits"])
    args = p.parse_args()
    if args.quick:
        args.rounds, args.repeats, args.seeds = 1, 3, 1
    warnings.simplefilter("ignore")
    print(f"CPU: {_cpu()}; sparsert {sparsert.__version__}")
    with tempfile.TemporaryDirectory() as folder:
        if "layers" not in args.skip:
            layers(args, folder)
        if "digits" not in args.skip:
            digits(args, folder)


if __name__ == "__main__":
    main()
