"""`sparsert demo --quick`: runs end to end in a subprocess and writes its files. Its run time is
printed, never asserted (no wall-clock assertions in tests: a loaded machine is slower)."""

from __future__ import annotations

import json
import re
import subprocess

from conftest import child_cwd, child_env
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sparsert

for _module in ("torch", "tqdm", "sklearn", "matplotlib"):
    pytest.importorskip(_module)


def test_demo_quick(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sparsert", "demo", "--quick", "--out", str(out), "--threads", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=child_cwd(),
        env=child_env(),
    )
    elapsed = time.perf_counter() - start
    print(proc.stdout)
    print(f"sparsert demo --quick took {elapsed:.1f} s")
    assert proc.returncode == 0, proc.stderr[-3000:]

    text = proc.stdout
    assert "quick" in text and "not the full ResNet-18" in text
    for variant in ("dense", "unstructured 90%", "structured 50% filters", "unstructured 90% (conv1 dense)"):
        assert re.search(rf"^{re.escape(variant)}\s", text, re.M), variant
    for column in ("sparsity", "accuracy", ".spr size", "sparsert ms", "PyTorch ms", "vs PyTorch"):
        assert column in text, column
    assert "pruning" in proc.stderr  # tqdm bars go to stderr

    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "quick" and results["seed"] == 0
    assert results["export_mismatches"] == [], results["export_mismatches"]
    digits = {r["variant"]: r for r in results["digits"]["variants"]}
    assert set(digits) == {"dense", "unstructured 90%", "structured 50% filters"}
    assert digits["dense"]["sparsity"] == 0.0
    assert digits["unstructured 90%"]["sparsity"] == pytest.approx(0.9, abs=0.02)
    assert digits["structured 50% filters"]["shrunk_layers"]
    for r in digits.values():
        # the runtime's accuracy is the model's accuracy, and a trained 8x8 digits CNN is good
        assert r["accuracy_sparsert"] == pytest.approx(r["accuracy_torch"], abs=1 / 360 + 1e-9)
        assert r["accuracy_sparsert"] > 0.9
        assert r["export_max_rel_error"] < 1e-4
        assert r["sparsert"]["median_ms"] > 0 and r["pytorch"]["median_ms"] > 0
        assert r["spr_bytes"] == (out / r["file"]).stat().st_size
    assert digits["unstructured 90%"]["csr_weights"] >= 3
    assert digits["unstructured 90%"]["spr_bytes"] < 0.35 * digits["dense"]["spr_bytes"]
    resnet = results["resnet"]["variants"]
    assert [r["file"] for r in resnet] == ["resnet_dense.spr", "resnet_sparse90.spr"]
    assert resnet[1]["sparsity"] > 0.85 and resnet[1]["spr_bytes"] < 0.3 * resnet[0]["spr_bytes"]

    # the written files load and run
    for name in (
        "digits_dense.spr",
        "digits_unstructured90.spr",
        "digits_structured50.spr",
        "resnet_dense.spr",
        "resnet_sparse90.spr",
    ):
        model = sparsert.load(out / name, threads=1)
        shape = [1 if d < 0 else d for d in model.inputs[0].shape]
        assert np.all(np.isfinite(model.run(np.zeros(shape, np.float32))))
    png = (out / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.slow
def test_demo_is_reproducible(tmp_path: Path) -> None:
    """Same seed, same accuracies and file sizes (latencies are measurements)."""
    from sparsert.demo import run_demo

    def key(results: dict) -> list:
        return [
            (r["variant"], r.get("accuracy_sparsert"), r["spr_bytes"], r["sparsity"])
            for r in results["digits"]["variants"] + results["resnet"]["variants"]
        ]

    import io

    first = run_demo(quick=True, threads=1, seed=3, stream=io.StringIO())
    second = run_demo(quick=True, threads=1, seed=3, stream=io.StringIO())
    assert key(first) == key(second)
    assert [c["accuracy"] for c in first["digits"]["pruning_curve"]] == [
        c["accuracy"] for c in second["digits"]["pruning_curve"]
    ]
    assert not list(tmp_path.iterdir())  # nothing written without --out


def test_demo_names_missing_packages(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from sparsert import cli

    monkeypatch.setitem(sys.modules, "sklearn", None)  # import now raises ImportError
    assert cli.main(["demo", "--quick"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sparsert demo: error: sparsert demo needs scikit-learn: pip install 'sparsert[demo]'"]


def test_noisy_timings_are_flagged_never_published_as_a_ratio() -> None:
    from sparsert.demo import _noise_note, _speedup, _speedup_value

    quiet = {"median_ms": 2.0, "min_ms": 1.9, "max_ms": 2.2, "spread": 0.05}
    fast = {"median_ms": 1.0, "min_ms": 0.9, "max_ms": 1.1, "spread": 0.04}
    busy = {"median_ms": 160.0, "min_ms": 0.08, "max_ms": 300.0, "spread": 1.8}
    assert _speedup(quiet, fast) == "2.00x" and _speedup_value(quiet, fast) == 2.0
    assert _speedup(busy, fast) == "noisy" and _speedup_value(busy, fast) is None
    assert _speedup(quiet, busy) == "noisy" and _speedup_value(quiet, busy) is None
    assert _speedup(None, fast) == "-"
    assert _noise_note(["2.00x", "-"]) is None
    assert "busy" in (_noise_note(["noisy"]) or "")
