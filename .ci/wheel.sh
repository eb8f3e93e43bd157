#!/usr/bin/env bash
# Builds the wheel once (`pip wheel .`), installs it into a fresh venv with nothing else but
# its run-time dependency (numpy), and runs .ci/wheel_smoke.py from outside the checkout, so
# the wheel path users take (`pip install sparsert-*.whl`) is proven on every CI run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python -m pip wheel "$ROOT" --no-deps -w "$WORK/dist" -q
ls -l "$WORK"/dist/*.whl
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "$WORK"/dist/sparsert-*.whl
(cd "$WORK" && "$WORK/venv/bin/python" "$ROOT/.ci/wheel_smoke.py")
