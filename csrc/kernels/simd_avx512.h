// Vector operations for the AVX-512 kernel files (the `Ops` of spmm_impl.h and
// gemm_impl.h). Include only from files compiled with the AVX-512 flags; the
// struct lives in an anonymous namespace so each kernel file owns its copy.
#pragma once

#include <immintrin.h>

namespace sparsert {
namespace kernels {
namespace {

struct Avx512Ops {
  using V = __m512;
  using Tail = __mmask16;  // lanes [0, count) set
  static constexpr int kLanes = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float f) { return _mm512_set1_ps(f); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static Tail tail(int count) { return static_cast<__mmask16>((1u << count) - 1u); }
  // Masked-out lanes are neither read (no fault past the end) nor written; loads give 0 there.
  static V load_tail(const float* p, Tail t) { return _mm512_maskz_loadu_ps(t, p); }
  static void store_tail(float* p, V v, Tail t) { _mm512_mask_storeu_ps(p, t, v); }
};

}  // namespace
}  // namespace kernels
}  // namespace sparsert
