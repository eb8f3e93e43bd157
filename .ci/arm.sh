#!/usr/bin/env bash
# Cross-build the C++ library, its tests and the example for aarch64 and run
# the GoogleTest suite under qemu-aarch64 (every NEON kernel against the
# scalar reference), then run the x86-written .spr through the ARM example.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-ci-arm64}
if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
  echo "aarch64 cross compiler or qemu-aarch64-static missing (apt-get install g++-aarch64-linux-gnu qemu-user-static)"
  exit 1
fi
GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
  -DSPARSERT_BUILD_TESTS=ON -DSPARSERT_BUILD_EXAMPLES=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)"
T0=$(date +%s)
ctest --test-dir "$BUILD" --output-on-failure
echo "emulated C++ test run: $(( $(date +%s) - T0 )) s"

# A .spr written on x86 runs unchanged on ARM: the example under qemu must
# print what the x86 Python runtime computes.
if python -c "import sparsert" 2>/dev/null; then
  python .ci/arm_check.py "$BUILD/examples/cpp/sparsert_run"
else
  echo "sparsert Python package not installed: skipping the x86 -> ARM .spr check"
fi
