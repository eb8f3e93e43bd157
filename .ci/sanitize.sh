#!/usr/bin/env bash
# Builds the library and the C++ tests with AddressSanitizer + UndefinedBehavior-
# Sanitizer (-DSPARSERT_SANITIZE=ON) in a separate build dir and runs ctest with
# leak detection on. Any sanitizer report fails the run.
#   .ci/sanitize.sh            Env: SANITIZE_BUILD (default build-asan), SANITIZE_JOBS
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SANITIZE_BUILD:-$ROOT/build-asan}"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)

cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSPARSERT_SANITIZE=ON -DSPARSERT_BUILD_TESTS=ON -DSPARSERT_BUILD_PYTHON=OFF >/dev/null
cmake --build "$BUILD" -j"${SANITIZE_JOBS:-2}"

# halt_on_error + abort: a report is a failed test, never a warning in a log.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LSAN_OPTIONS="report_objects=1${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
cd "$BUILD"
ctest --output-on-failure --timeout 1500
