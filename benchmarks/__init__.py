"""The sparsert benchmark suite (pytest-benchmark) and its report script; see docs/benchmarks.md."""
