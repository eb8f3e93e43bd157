"""Turn a pytest-benchmark JSON run into markdown tables and a PNG plot.

    python -m benchmarks.report run.json                 # writes run.md and run.png, prints the tables
    python -m benchmarks.report run.json --out results/x  # writes results/x.md and results/x.png
    python -m benchmarks.report layers.json models.json --out both   # several runs in one report

Layer table: per shape and sparsity, sparsert's median time, useful GFLOP/s (2·nnz·N / time),
effective GFLOP/s (2·M·K·N / time) and speedup over numpy dense, with the peers' speedups beside it.
Model table: per model, batch, threads and variant, sparsert's median latency, its speedup over
its own dense model (u0) and over onnxruntime and PyTorch running the dense model. A speedup is
``peer median / sparsert median``: above 1 means sparsert is faster. The PNG (needs matplotlib,
else skipped with a message) plots those speedups against sparsity.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

Record = dict[str, Any]

VARIANT_ORDER = ["u0", "u50", "u80", "u90", "u95", "s50"]


def load_run(path: str) -> tuple[list[Record], dict[str, Any]]:
    """The benchmarks of a run as flat records (extra_info + median seconds), and its machine info."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"error: no such file: {path}") from None
    except json.JSONDecodeError as e:
        raise SystemExit(
            f"error: {path} is not JSON ({e}); pass the file written by --benchmark-json"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise SystemExit(f"error: {path} has no 'benchmarks' list; pass the file written by --benchmark-json")
    records = []
    for bench in data["benchmarks"]:
        info = dict(bench.get("extra_info") or {})
        stats = bench.get("stats") or {}
        if info.get("kind") not in ("layer", "model") or "median" not in stats:
            continue  # not one of ours, or a benchmark that did not run
        info["median_s"] = float(stats["median"])
        info["name"] = bench.get("name", "")
        records.append(info)
    return records, dict(data.get("machine_info") or {})


def _time(seconds: float | None, unit: str) -> str:
    if seconds is None:
        return "—"
    value = seconds * (1e6 if unit == "us" else 1e3)
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator <= 0:
        return "—"
    return f"{numerator / denominator:.2f}×"


def _pct(sparsity: float | None) -> str:
    return "dense" if sparsity is None else f"{sparsity * 100:.0f}%"


def layer_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per (shape, sparsity) with every library's median (seconds) and derived rates."""
    layer = [r for r in records if r["kind"] == "layer"]
    dense: dict[tuple[int, int, int], dict[str, float]] = {}
    sparse: dict[tuple[int, int, int, float], dict[str, Record]] = {}
    for r in layer:
        shape = (int(r["M"]), int(r["K"]), int(r["N"]))
        if r.get("sparsity") is None:
            dense.setdefault(shape, {})[r["library"]] = r["median_s"]
        else:
            sparse.setdefault((*shape, float(r["sparsity"])), {})[r["library"]] = r
    rows = []
    shape_order = list(dict.fromkeys(key[:3] for key in sparse))  # the order the suite ran them
    for key in sorted(sparse, key=lambda k: (shape_order.index(k[:3]), k[3])):
        shape, libs = key[:3], sparse[key]
        peers = dense.get(shape, {})
        row: dict[str, Any] = {
            "shape": shape,
            "sparsity": key[3],
            "numpy": peers.get("numpy"),
            "torch": peers.get("torch"),
        }
        for lib in ("sparsert", "scipy_csr", "torch_sparse_csr"):
            row[lib] = libs[lib]["median_s"] if lib in libs else None
        s = libs.get("sparsert")
        if s is not None:
            row["useful_gflops"] = s["useful_flop"] / s["median_s"] / 1e9
            row["effective_gflops"] = s["dense_flop"] / s["median_s"] / 1e9
            row["storage"] = s.get("storage", "")
        rows.append(row)
    return rows


def layer_table(rows: Sequence[dict[str, Any]]) -> str:
    head = [
        "M×K×N",
        "sparsity",
        "sparsert µs",
        "storage",
        "useful GFLOP/s",
        "effective GFLOP/s",
        "sparsert vs numpy",
        "scipy CSR vs numpy",
        "torch CSR vs numpy",
        "torch dense vs numpy",
        "numpy µs",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m, k, n = r["shape"]
        cells = [
            f"{m}×{k}×{n}",
            _pct(r["sparsity"]),
            _time(r["sparsert"], "us"),
            r.get("storage", "—"),
            f"{r['useful_gflops']:.1f}" if "useful_gflops" in r else "—",
            f"{r['effective_gflops']:.1f}" if "effective_gflops" in r else "—",
            _ratio(r["numpy"], r["sparsert"]),
            _ratio(r["numpy"], r["scipy_csr"]),
            _ratio(r["numpy"], r["torch_sparse_csr"]),
            _ratio(r["numpy"], r["torch"]),
            _time(r["numpy"], "us"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    model = [r for r in records if r["kind"] == "model"]
    peers: dict[tuple[str, int, int], dict[str, float]] = {}
    runs: dict[tuple[str, int, int], dict[str, Record]] = {}
    for r in model:
        key = (r["model"], int(r["batch"]), int(r["threads"]))
        if r["library"] == "sparsert":
            runs.setdefault(key, {})[r["variant"]] = r
        else:
            peers.setdefault(key, {})[r["library"]] = r["median_s"]
    rows = []
    for key in sorted(set(runs) | set(peers)):
        variants = runs.get(key, {})
        base = variants.get("u0")
        order = sorted(variants, key=lambda v: VARIANT_ORDER.index(v) if v in VARIANT_ORDER else 99)
        for variant in order or ["—"]:
            r = variants.get(variant)
            rows.append(
                {
                    "model": key[0],
                    "batch": key[1],
                    "threads": key[2],
                    "variant": variant,
                    "sparsity": r["sparsity"] if r else None,
                    "structured": bool(r and r.get("structured")),
                    "sparsert": r["median_s"] if r else None,
                    "sparsert_dense": base["median_s"] if base else None,
                    "onnxruntime": peers.get(key, {}).get("onnxruntime"),
                    "torch": peers.get(key, {}).get("torch"),
                    "gflop": r["flop"] / 1e9 if r and "flop" in r else None,
                }
            )
    return rows


def model_table(rows: Sequence[dict[str, Any]]) -> str:
    head = [
        "model",
        "batch",
        "threads",
        "variant",
        "weight sparsity",
        "GFLOP",
        "sparsert ms",
        "vs sparsert dense",
        "onnxruntime ms (dense)",
        "vs onnxruntime",
        "PyTorch ms (dense)",
        "vs PyTorch",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        sparsity = "—" if r["sparsity"] is None else f"{r['sparsity'] * 100:.0f}%"
        if r["structured"]:
            sparsity = "50% structured (shrunk)"
        cells = [
            r["model"],
            str(r["batch"]),
            str(r["threads"]),
            r["variant"],
            sparsity,
            "—" if r["gflop"] is None else f"{r['gflop']:.3g}",
            _time(r["sparsert"], "ms"),
            _ratio(r["sparsert_dense"], r["sparsert"]),
            _time(r["onnxruntime"], "ms"),
            _ratio(r["onnxruntime"], r["sparsert"]),
            _time(r["torch"], "ms"),
            _ratio(r["torch"], r["sparsert"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_summary(machine: dict[str, Any]) -> str:
    cpu = machine.get("cpu") or {}
    brand = cpu.get("brand_raw") if isinstance(cpu, dict) else None
    brand = brand or (machine.get("proc_cpuinfo") or {}).get("model name") or machine.get("processor") or "?"
    sp = machine.get("sparsert") or {}
    libs = machine.get("libraries") or {}
    blas = machine.get("threadpoolctl")
    blas_text = "not recorded"
    if isinstance(blas, list):
        blas_text = ", ".join(
            f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture', '')}, "
            f"{p.get('num_threads')} threads)"
            for p in blas
            if p.get("user_api") == "blas"
        )
    elif isinstance(blas, str):
        blas_text = blas
    lines = [
        f"- CPU: {brand}; {machine.get('cpu_count', '?')} logical cores; "
        f"{machine.get('platform_machine', '')} {machine.get('system', '')} {machine.get('release', '')}",
        f"- sparsert {sp.get('version', '?')}, kernels: {sp.get('cpu_features', '?')}"
        + (f" (SPARSERT_ISA={sp['isa_cap']})" if sp.get("isa_cap") else ""),
        "- " + ", ".join(f"{k} {v}" for k, v in libs.items()),
        f"- numpy BLAS: {blas_text}; OPENBLAS_* at run time: {machine.get('openblas_env') or 'none'}",
        f"- mode: {machine.get('benchmark_mode', '?')}; Python {machine.get('python_version', '?')}",
    ]
    return "\n".join(lines)


def plot(layer: Sequence[dict[str, Any]], model: Sequence[dict[str, Any]], path: str) -> str | None:
    """Write the PNG; returns None or the reason it was skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return "matplotlib is not installed: no PNG written (pip install matplotlib)"
    panels = [p for p in ("layer", "model") if (layer if p == "layer" else model)]
    if not panels:
        return "the run has no layer or model benchmarks: no PNG written"
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "layer":
            shapes = list(dict.fromkeys(r["shape"] for r in layer))
            for shape in shapes:
                pts = [
                    (r["sparsity"] * 100, r["numpy"] / r["sparsert"])
                    for r in layer
                    if r["shape"] == shape and r["sparsert"] and r["numpy"]
                ]
                if pts:
                    ax.plot(*zip(*sorted(pts)), marker="o", label="×".join(map(str, shape)))
            ax.set_title("Layer W·X, 1 thread: sparsert vs numpy dense")
            ax.set_ylabel("speedup over numpy dense (×)")
        else:
            baseline = next(
                (b for b in ("onnxruntime", "torch", "sparsert_dense") if any(r[b] for r in model)),
                "sparsert_dense",
            )
            configs = sorted({(r["model"], r["batch"], r["threads"]) for r in model})
            for name, batch, threads in configs:
                rows = [
                    r
                    for r in model
                    if (r["model"], r["batch"], r["threads"]) == (name, batch, threads)
                    and r["sparsert"]
                    and r[baseline]
                ]
                pts = sorted(
                    (r["sparsity"] * 100, r[baseline] / r["sparsert"]) for r in rows if not r["structured"]
                )
                if not pts:
                    continue
                line = ax.plot(*zip(*pts), marker="o", label=f"{name} b{batch} t{threads}")[0]
                for r in rows:
                    if r["structured"]:
                        ax.plot(
                            [50],
                            [r[baseline] / r["sparsert"]],
                            marker="*",
                            markersize=12,
                            color=line.get_color(),
                            linestyle="none",
                        )
            label = {"onnxruntime": "onnxruntime", "torch": "PyTorch", "sparsert_dense": "sparsert dense"}[
                baseline
            ]
            ax.set_title(f"Models: sparsert vs {label} on the dense model (★ = 50% structured)")
            ax.set_ylabel(f"speedup over {label} dense (×)")
        ax.axhline(1.0, color="gray", linewidth=0.8, linestyle="--")
        ax.set_xlabel("weight sparsity (%)")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.yaxis.set_minor_formatter(
            FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}".lstrip("0.")[:1] in "2357" else "")
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def render(records: Sequence[Record], machine: dict[str, Any], source: str) -> str:
    parts = [f"# sparsert benchmark results ({source})", "", machine_summary(machine), ""]
    layer = layer_rows(records)
    model = model_rows(records)
    if layer:
        parts += ["## Layer level (W·X, 1 thread; medians)", "", layer_table(layer), ""]
    if model:
        parts += ["## Model level (medians; peers run the dense model)", "", model_table(model), ""]
    if not layer and not model:
        parts += [
            "No sparsert benchmarks with timings in this run (was it run with --benchmark-disable?).",
            "",
        ]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="run.json", help="JSON written by pytest --benchmark-json")
    parser.add_argument("--out", help="output path prefix (default: the first JSON path without .json)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    args = parser.parse_args(argv)
    records: list[Record] = []
    machine: dict[str, Any] = {}
    for path in args.runs:
        more, info = load_run(path)
        records += more
        machine = machine or info  # the first run's machine describes the report
    first = args.runs[0]
    prefix = args.out or (first[:-5] if first.endswith(".json") else first)
    if os.path.dirname(prefix):
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
    text = render(records, machine, ", ".join(os.path.basename(p) for p in args.runs))
    with open(prefix + ".md", "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    print(f"wrote {prefix}.md", file=sys.stderr)
    if not args.no_plot:
        skipped = plot(layer_rows(records), model_rows(records), prefix + ".png")
        print(skipped or f"wrote {prefix}.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
