// Vector operations for the AVX2 kernel files (the `Ops` of spmm_impl.h and
// gemm_impl.h). Include only from files compiled with -mavx2 -mfma; the
// struct lives in an anonymous namespace so each kernel file owns its copy.
#pragma once

#include <immintrin.h>

namespace sparsert {
namespace kernels {
namespace {

struct Avx2Ops {
  using V = __m256;
  using Tail = __m256i;  // lanes [0, count) all-ones
  static constexpr int kLanes = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float f) { return _mm256_set1_ps(f); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static Tail tail(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  // vmaskmov: masked-out lanes are not accessed (no fault past the end); loads give 0 there.
  static V load_tail(const float* p, Tail t) { return _mm256_maskload_ps(p, t); }
  static void store_tail(float* p, V v, Tail t) { _mm256_maskstore_ps(p, t, v); }
};

}  // namespace
}  // namespace kernels
}  // namespace sparsert
