#!/usr/bin/env bash
# Builds fuzz/fuzz_spr_load and fuzz/fuzz_graph (clang, libFuzzer + ASan + UBSan)
# and fuzzes each for a bounded time. fuzz_spr_load (bytes) starts from the
# committed seeds (fuzz/seeds/: one valid file
# per op and storage kind, written by fuzz/make_seeds.py) and the committed
# corpus of interesting inputs found by earlier runs (fuzz/corpus/). Fails on any
# crash, sanitizer report, leak, timeout or out-of-memory; the input that
# caused it is kept in $FUZZ_ARTIFACTS (default: a temp dir, printed).
#
#   .ci/fuzz.sh [seconds=120]                 fuzz; the tree is not modified
#   FUZZ_UPDATE_CORPUS=1 .ci/fuzz.sh 600      also rewrite fuzz/corpus/ as the inputs
#                                             that add coverage beyond the seeds (-merge=1)
# Env: FUZZ_BUILD (build dir, default build-fuzz), FUZZ_JOBS (parallel build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_TO_RUN="${1:-120}"
BUILD="${FUZZ_BUILD:-$ROOT/build-fuzz}"
MAX_LEN=8192

if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi
JOBS="${FUZZ_JOBS:-2}" "$ROOT/fuzz/build.sh" "$BUILD"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ARTIFACTS="${FUZZ_ARTIFACTS:-$WORK/artifacts}"
mkdir -p "$WORK/corpus" "$ARTIFACTS"
cp "$ROOT"/fuzz/seeds/* "$WORK/corpus/"
cp "$ROOT"/fuzz/corpus/* "$WORK/corpus/" 2>/dev/null || true
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

# Every input that once crashed (fuzz/regressions/, one file per fixed bug) first.
if ! "$BUILD/fuzz_spr_load" -rss_limit_mb=2048 -timeout=10 "$ROOT"/fuzz/regressions/* \
    >"$WORK/regressions.log" 2>&1; then
  tail -n 60 "$WORK/regressions.log"
  echo "fuzz.sh: FAILED: a fuzz/regressions/ input crashes again" >&2
  exit 1
fi
echo "fuzz.sh: $(ls "$ROOT"/fuzz/regressions | wc -l) regression inputs pass"

# A fixed seed and a fixed number of runs make the CI run reproducible: the same
# inputs are tried on every machine (the time limit only caps a slow machine,
# which then tries a prefix of them). FUZZ_SEED / FUZZ_RUNS explore further.
FUZZ_SEED=${FUZZ_SEED:-1}
FUZZ_RUNS=${FUZZ_RUNS:-100000}  # a prefix of the 600,000 seeded runs CI made before (same seed)
echo "fuzz.sh: fuzzing $FUZZ_RUNS runs (seed $FUZZ_SEED, at most ${SECONDS_TO_RUN}s) from $(ls "$WORK/corpus" | wc -l) corpus files"
status=0
"$BUILD/fuzz_spr_load" "$WORK/corpus" -seed="$FUZZ_SEED" -runs="$FUZZ_RUNS" \
  -max_total_time="$SECONDS_TO_RUN" -max_len="$MAX_LEN" -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix="$ARTIFACTS/" -print_final_stats=1 >"$WORK/fuzz.log" 2>&1 || status=$?
grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$WORK/fuzz.log" || true
if [ "$status" -ne 0 ]; then
  tail -n 80 "$WORK/fuzz.log"
  if [ -z "${FUZZ_ARTIFACTS:-}" ]; then
    mkdir -p "$BUILD/fuzz-artifacts"
    cp "$ARTIFACTS"/* "$BUILD/fuzz-artifacts/" 2>/dev/null || true
    ARTIFACTS="$BUILD/fuzz-artifacts"
  fi
  echo "fuzz.sh: FAILED (exit $status); reproducer(s) in $ARTIFACTS:" >&2
  ls -la "$ARTIFACTS" >&2
  exit 1
fi

# The structure-aware target: random valid graphs (every op, dtype, storage and
# extreme attribute) that get past the reader. Its regressions first, then a
# fixed-seed run from an empty corpus.
if ! "$BUILD/fuzz_graph" -rss_limit_mb=2048 -timeout=10 "$ROOT"/fuzz/regressions-graph/* \
    >"$WORK/regressions-graph.log" 2>&1; then
  tail -n 60 "$WORK/regressions-graph.log"
  echo "fuzz.sh: FAILED: a fuzz/regressions-graph/ input crashes again" >&2
  exit 1
fi
GRAPH_RUNS=${FUZZ_GRAPH_RUNS:-30000}  # about 25 s on a 2-core Zen 3; a prefix of the 400,000 that passed (FUZZ_GRAPH_RUNS for more)
echo "fuzz.sh: fuzz_graph: $GRAPH_RUNS runs (seed $FUZZ_SEED, at most ${SECONDS_TO_RUN}s)"
mkdir -p "$WORK/graph-corpus"
status=0
"$BUILD/fuzz_graph" "$WORK/graph-corpus" -seed="$FUZZ_SEED" -runs="$GRAPH_RUNS" \
  -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix="$ARTIFACTS/" -print_final_stats=1 >"$WORK/fuzz-graph.log" 2>&1 || status=$?
grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$WORK/fuzz-graph.log" || true
if [ "$status" -ne 0 ]; then
  tail -n 80 "$WORK/fuzz-graph.log"
  echo "fuzz.sh: fuzz_graph FAILED (exit $status); reproducer(s) in $ARTIFACTS:" >&2
  ls -la "$ARTIFACTS" >&2
  exit 1
fi

if [ "${FUZZ_UPDATE_CORPUS:-0}" = "1" ]; then
  # Merge into a folder that starts with the seeds, so only inputs adding
  # coverage beyond them are kept; then drop the seeds again.
  mkdir -p "$WORK/merged"
  cp "$ROOT"/fuzz/seeds/* "$WORK/merged/"
  # -use_counters=0: keep inputs that add edges, not hit counts (a corpus of
  # a few hundred files rather than thousands)
  "$BUILD/fuzz_spr_load" -merge=1 -use_counters=0 -max_len="$MAX_LEN" -rss_limit_mb=2048 -timeout=10 \
    "$WORK/merged" "$WORK/corpus" >"$WORK/merge.log" 2>&1
  for f in "$ROOT"/fuzz/seeds/*; do rm -f "$WORK/merged/$(basename "$f")"; done
  mkdir -p "$ROOT/fuzz/corpus"
  rm -f "$ROOT"/fuzz/corpus/*
  cp "$WORK"/merged/* "$ROOT/fuzz/corpus/" 2>/dev/null || true
  echo "fuzz.sh: fuzz/corpus now holds $(ls "$ROOT/fuzz/corpus" | wc -l) files," \
    "$(du -sk "$ROOT/fuzz/corpus" | cut -f1) KiB"
fi
echo "fuzz.sh: 2 targets passed, 0 failed"
