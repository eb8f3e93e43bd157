#!/usr/bin/env bash
# Builds the libFuzzer targets with clang: the library with
# -fsanitize=fuzzer-no-link,address,undefined (coverage + ASan + UBSan), the
# targets linked with -fsanitize=fuzzer. Output: $BUILD/fuzz_spr_load (bytes) and
# $BUILD/fuzz_graph (random valid graphs).
#   fuzz/build.sh [build-dir]      (default: build-fuzz next to this repo's root)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build-fuzz}"
CXX="${FUZZ_CXX:-clang++}"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
FLAGS="-g -O1 $SAN"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)

cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_CXX_FLAGS="$FLAGS -fsanitize=fuzzer-no-link" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DSPARSERT_BUILD_TESTS=OFF -DSPARSERT_BUILD_PYTHON=OFF -DSPARSERT_SANITIZE=OFF >/dev/null
cmake --build "$BUILD" --target sparsert -j"${JOBS:-2}"
for target in fuzz_spr_load fuzz_graph; do
  "$CXX" -std=c++17 $FLAGS -fsanitize=fuzzer -I"$ROOT/csrc" -I"$ROOT/csrc/include" \
    "$ROOT/fuzz/$target.cc" "$BUILD/libsparsert.a" -lpthread -o "$BUILD/$target"
  echo "built $BUILD/$target"
done
