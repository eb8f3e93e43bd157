"""``sparsert demo``: the main job on a built-in default (sparsert.demo)."""

from __future__ import annotations

import argparse
from typing import Any

from sparsert.cli._common import thread_count


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="prune, export and benchmark small CNNs end to end",
        description="Train a small CNN on scikit-learn's digits, prune it (90 percent unstructured, 50 percent of "
        "the filters), export to .spr, and compare accuracy, size and latency with PyTorch and onnxruntime; then "
        "a ResNet-18 at 224x224, dense vs 90 percent sparse. Writes the .spr files, results.json and results.png "
        "to --out (default ./sparsert-demo). Needs the 'demo' extra; nothing is downloaded.",
    )
    p.add_argument("--quick", action="store_true", help="fewer epochs and a smaller ResNet at 112x112")
    p.add_argument("--out", metavar="DIR", default="sparsert-demo",
                   help="where to write the .spr files, results.json and results.png (default ./sparsert-demo)")
    p.add_argument("--threads", type=thread_count, help="threads for every runtime (default or 0: every core)")
    p.add_argument("--seed", type=int, default=0, help="seed for data split, init and training (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sparsert.demo import run_demo

    run_demo(quick=args.quick, out=args.out, threads=args.threads, seed=args.seed)
    return 0
