"""Score a dataset with a sparsert model on a local Dask cluster, one model per worker.

    pip install sparsert "dask[distributed]"
    python examples/dask/score_dataset.py                       # built-in sparse MLP, 300,000 rows
    python examples/dask/score_dataset.py --model model.spr --rows 500000 --workers 1,2,4

Each worker process loads the model once (a WorkerPlugin holds it; a sparsert Model pickles
as its path or bytes, so the worker loads its own copy) and scores whole chunks: batch
inference amortises the per-call cost. Each worker runs one task at a time with one kernel
thread, so N workers use N cores and nothing is oversubscribed. The script times the same
scoring in this process first (the baseline), then on clusters of each worker count, checks
every cluster's result against the baseline, and prints rows per second.

On a multi-node cluster the same code runs with ``Client("scheduler-address:8786")`` instead
of ``LocalCluster``; see docs/deployment.md (also for Ray).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np

import sparsert


def builtin_model(path: str, features: int, seed: int = 0) -> str:
    """A 90%-sparse MLP features -> 512 -> 512 -> 10 with random weights (CSR layers)."""
    rng = np.random.default_rng(seed)
    b = sparsert.GraphBuilder("sparse_mlp")
    x = b.input("x", (-1, features))
    for k, (n_in, n_out) in enumerate(((features, 512), (512, 512), (512, 10))):
        w = (rng.standard_normal((n_out, n_in)) / np.sqrt(0.1 * n_in)).astype(np.float32)
        w[rng.random(w.shape) < 0.9] = 0.0
        attrs = {"activation": "relu"} if k < 2 else {}
        x = b.node("Linear", [x, b.constant(f"w{k}", w, storage="csr"), b.constant(f"b{k}", np.zeros(n_out, np.float32))],
                   attrs)
    b.output(x, "scores")
    b.save(path)
    return path


def make_block(seed: int, index: int, rows: int, features: int) -> np.ndarray:
    """Chunk ``index`` of the synthetic dataset: the same values wherever it is made."""
    return np.random.default_rng([seed, index]).standard_normal((rows, features), dtype=np.float32)


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), to record with the timings."""
    try:
        with open("/proc/cpuinfo") as f:
            info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in f if ":" in line)}
        if "model name" not in info:
            return platform.machine()
        return f"{info['model name']} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
    except OSError:
        return platform.processor() or platform.machine()


def chunk_rows(total: int, chunk: int) -> list[int]:
    return [min(chunk, total - start) for start in range(0, total, chunk)]


def score_locally(model: sparsert.Model, sizes: list[int], features: int, seed: int) -> np.ndarray:
    return np.concatenate([model.run(make_block(seed, i, n, features)) for i, n in enumerate(sizes)])


def score_on_cluster(model_path: str, sizes: list[int], features: int, seed: int, workers: int) -> tuple[np.ndarray, float]:
    from dask.distributed import Client, LocalCluster, WorkerPlugin, get_worker

    class SparsertModel(WorkerPlugin):
        """Holds one loaded model per worker process (unpickling it on the worker loads it)."""

        name = "sparsert-model"

        def __init__(self, model: sparsert.Model) -> None:
            self.model = model

    def score(index: int, rows: int) -> np.ndarray:
        model = get_worker().plugins["sparsert-model"].model
        return model.run(make_block(seed, index, rows, features))

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        client.register_plugin(SparsertModel(sparsert.load(model_path, threads=1)))
        def warm_up(dask_worker: object) -> None:  # on every worker, before timing
            dask_worker.plugins["sparsert-model"].model.run(np.zeros((1, features), np.float32))

        client.run(warm_up)
        start = time.perf_counter()
        futures = [client.submit(score, i, n, pure=False) for i, n in enumerate(sizes)]
        parts = client.gather(futures)
        elapsed = time.perf_counter() - start
    return np.concatenate(parts), elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help=".spr model taking [batch, features] float32 (default: a built-in sparse MLP)")
    p.add_argument("--rows", type=int, default=300_000, help="rows of the synthetic dataset (default 300,000)")
    p.add_argument("--features", type=int, default=256, help="features per row for the built-in model (default 256)")
    p.add_argument("--chunk", type=int, default=10_000, help="rows per task (default 10,000)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts to time (default 1,2)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    if args.rows < 1 or args.chunk < 1 or min(workers) < 1:
        p.error("--rows, --chunk and --workers must be positive")

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or builtin_model(os.path.join(tmp, "sparse_mlp.spr"), args.features, args.seed)
        local = sparsert.load(path, threads=1)
        if len(local.inputs) != 1 or local.inputs[0].shape is None or len(local.inputs[0].shape) != 2:
            p.error(f"{path} must take one [batch, features] input, it takes {local.inputs}")
        features = local.inputs[0].shape[1]
        sizes = chunk_rows(args.rows, args.chunk)
        print(f"{args.rows:,} rows x {features} features in {len(sizes)} chunks of <= {args.chunk:,}; "
              f"model {os.path.basename(path)}; CPU {cpu_name()}, "
              f"kernels {sparsert.cpu_features()}, {sparsert.default_threads()} usable cores")
        start = time.perf_counter()
        reference = score_locally(local, sizes, features, args.seed)
        base_s = time.perf_counter() - start
        rows = [("this process, 1 thread", base_s, True)]
        for w in workers:
            scores, seconds = score_on_cluster(path, sizes, features, args.seed, w)
            same = scores.shape == reference.shape and np.allclose(scores, reference, rtol=1e-5, atol=1e-5)
            rows.append((f"LocalCluster, {w} worker(s) x 1 thread", seconds, same))
    print(f"{'run':<36} {'seconds':>8} {'rows/s':>12} {'vs 1 worker':>12}  matches")
    one = next((s for name, s, _ in rows if name.startswith("LocalCluster, 1 ")), None)
    for name, seconds, same in rows:
        ratio = f"{one / seconds:.2f}x" if one and name.startswith("LocalCluster") else ""
        print(f"{name:<36} {seconds:8.2f} {args.rows / seconds:12,.0f} {ratio:>12}  {'yes' if same else 'NO'}")
    return 0 if all(same for _, _, same in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
